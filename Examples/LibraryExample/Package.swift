// swift-tools-version: 6.0
// A package that uses mila as a library, by path: classifies an image with the embedded digits
// model. CI builds and runs it (.ci/run).
import PackageDescription

let package = Package(
    name: "LibraryExample",
    platforms: [.macOS(.v13)],
    dependencies: [.package(name: "mila", path: "../..")],
    targets: [
        .executableTarget(name: "classify-digit", dependencies: [
            .product(name: "MilaEngine", package: "mila"),
            .product(name: "MilaImage", package: "mila"),
        ]),
    ]
)
