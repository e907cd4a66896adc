// eltwise.cl: the elementwise work that no producer could absorb, and zero padding.
//
// Layout: flat float arrays of n elements; pad works on (B, H, W, C) channels-last maps.
//   eltwise_binary      out = a + b (op 0) or a * b (op 1). Global (n).
//   eltwise_activation  out = act(x) (ACT_* codes). Global (n).
//   pad_bottom_right    out (B, Ho, Wo, C) = x (B, H, W, C) padded with zeros at the bottom and
//                       right (odd maps before a downsample; images to a multiple of 4).
//                       Global (C * Wo, Ho, B).
//   copy_vec16          out = x, 16 floats per work-item (vload16/vstore16, scalar tail): the
//                       bandwidth yardstick of the benchmarks (what a depthwise conv is held
//                       against). Global (ceil(n / 16)).
// One element per work-item (copy_vec16 aside): PoCL's work-group vectoriser handles these straight-line bodies.
// CPU references: Reference.elementwise, Reference.activation, Reference.padBottomRight (copy:
// the input itself).
// Tests: ElementwiseTests.

__kernel void eltwise_binary(const int n, const int op, __global const float* a, __global const float* b,
                             __global float* out) {
    const int i = get_global_id(0);
    if (i >= n) return;
    out[i] = op == 0 ? a[i] + b[i] : a[i] * b[i];
}

__kernel void eltwise_activation(const int n, const int act, __global const float* x, __global float* out) {
    const int i = get_global_id(0);
    if (i >= n) return;
    out[i] = mila_act_float(x[i], act);
}

__kernel void pad_bottom_right(const int H, const int W, const int C, const int Ho, const int Wo,
                               __global const float* x, __global float* out) {
    const int e = get_global_id(0), oy = get_global_id(1), b = get_global_id(2);
    if (e >= Wo * C) return;
    const int ox = e / C, c = e % C;
    const float v = (oy < H && ox < W) ? x[(((size_t)b * H + oy) * W + ox) * C + c] : 0.0f;
    out[(((size_t)b * Ho + oy) * Wo + ox) * C + c] = v;
}

__kernel void copy_vec16(const int n, __global const float* x, __global float* out) {
    const int i = get_global_id(0) * 16;
    if (i + 16 <= n) {
        vstore16(vload16(0, x + i), 0, out + i);
    } else {
        for (int j = i; j < n; ++j) out[j] = x[j];
    }
}
