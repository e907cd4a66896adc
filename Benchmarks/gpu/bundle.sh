#!/usr/bin/env bash
# Builds what a lent GPU machine needs to run the engine (it has NVIDIA's driver but no Swift
# toolchain and no package registry): release mila-infer and mila-kernel-bench with the Swift
# runtime and Foundation linked in, stripped, plus every shared library they load beyond glibc
# (the OpenCL ICD loader, CLBlast, libpng, libjpeg, libstdc++), in .build/gpu-bundle/. Kernels
# and the embedded models are inside the binaries. The two binaries are ~120 MB (each links
# Foundation and ICU's data), over what the device tool carries with the working tree (64 MiB in
# all, the tree is ~41 MB), so the folder travels as .build/gpu-bundle.tar.xz (~25 MB; tree + tarball was 66.1 of 67.1 MB on 2026-12-06):
#
#   bash Benchmarks/gpu/bundle.sh        # here, then run Benchmarks/gpu/run.sh there, with
#                                        # carry [".build/gpu-bundle.tar.xz"]
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --static-swift-stdlib --product mila-infer >/dev/null
swift build -c release --static-swift-stdlib --product mila-kernel-bench >/dev/null
bundle=.build/gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle/lib"
for binary in mila-infer mila-kernel-bench; do
    cp ".build/release/$binary" "$bundle/"
    strip "$bundle/$binary"
done
# glibc's own libraries stay the machine's; everything else ldd resolves travels.
ldd "$bundle/mila-infer" "$bundle/mila-kernel-bench" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
while read -r library; do
    case "$(basename "$library")" in
        libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libresolv.so*|libutil.so*) ;;
        *) cp -L "$library" "$bundle/lib/" ;;
    esac
done
echo "glibc here: $(ldd --version | head -1)" > "$bundle/BUILT"
git rev-parse --short HEAD >> "$bundle/BUILT" 2>/dev/null || true
tar -C .build -cf - gpu-bundle | xz -9e -T2 > .build/gpu-bundle.tar.xz
echo "$(du -sh "$bundle" | cut -f1) in $bundle, $(du -h .build/gpu-bundle.tar.xz | cut -f1) as .build/gpu-bundle.tar.xz; libraries: $(ls "$bundle/lib" | tr '\n' ' ')"
