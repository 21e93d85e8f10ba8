// RMSNorm, training pair:
//   forward   r[n] = 1 / sqrt(mean_i x[n, i]² + eps),   out[n, i] = x[n, i] · r[n] · w[i]
//   backward  with g = dout ⊙ w:
//             dw[i]    += Σ_n dout[n, i] · x[n, i] · r[n]
//             dx[n, i] += r[n] · g[n, i] − x[n, i] · r[n]³ · (Σ_j g[n, j] · x[n, j]) / D
//
//   x    [N, D]
//   w    [D]
//   out  [N, D]
//   rstd [N]      cached for backward, with x
//
// Backward accumulates into dx and dw (dw skipped when empty: a frozen norm). fp32 rows of a multiple of 16 with
// AVX-512 run fused Vector512 passes, rows split across the worker pool in a fixed number of chunks: dx and out are
// per row; dw is summed per chunk and the chunks' sums added in chunk order, so results do not depend on the
// machine's thread count.
// Reference: HF LlamaRMSNorm; llm.c layernorm_backward without the mean and bias terms.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TuningPlatform.Engine.Threading;

namespace TuningPlatform.Engine.Training.Ops;

/// <summary>Root-mean-square normalisation and its gradient.</summary>
public static class RmsNormOp
{
    /// <summary>Normalises each row of <paramref name="x"/>; writes each row's reciprocal RMS to <paramref name="rstd"/>.</summary>
    public static void Forward<T>(Span<T> output, Span<T> rstd, ReadOnlySpan<T> x, ReadOnlySpan<T> weight, int dim, T eps)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float) && FastJob.Fits(dim))
        {
            FastJob.Run(MemoryMarshal.Cast<T, float>(output), MemoryMarshal.Cast<T, float>(rstd), default, default,
                MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(weight), dim, float.CreateTruncating(eps), backward: false);
            return;
        }

        var rows = x.Length / dim;
        var d = T.CreateTruncating(dim);
        for (var n = 0; n < rows; n++)
        {
            var row = x.Slice(n * dim, dim);
            var r = T.One / T.Sqrt(TensorPrimitives.SumOfSquares(row) / d + eps);
            rstd[n] = r;
            var o = output.Slice(n * dim, dim);
            // x · r first, then · w: the order HF uses, so fp32 rounding matches the inference path.
            TensorPrimitives.Multiply(row, r, o);
            TensorPrimitives.Multiply(o, weight, o);
        }
    }

    /// <summary>Accumulates dx and dw from dout, the cached input and its reciprocal RMS.</summary>
    public static void Backward<T>(Span<T> dx, Span<T> dWeight, ReadOnlySpan<T> dOutput, ReadOnlySpan<T> x, ReadOnlySpan<T> weight,
        ReadOnlySpan<T> rstd, int dim)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float) && FastJob.Fits(dim))
        {
            FastJob.Run(MemoryMarshal.Cast<T, float>(dx), MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(MemoryMarshal.Cast<T, float>(rstd)), rstd.Length),
                MemoryMarshal.Cast<T, float>(dWeight), MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(MemoryMarshal.Cast<T, float>(dOutput)), dOutput.Length),
                MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(weight), dim, 0, backward: true);
            return;
        }

        if (typeof(T) == typeof(float) && dim <= 4096)
        {
            BackwardFloat(MemoryMarshal.Cast<T, float>(dx), MemoryMarshal.Cast<T, float>(dWeight), MemoryMarshal.Cast<T, float>(dOutput),
                MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(weight), MemoryMarshal.Cast<T, float>(rstd), dim);
            return;
        }

        var rows = x.Length / dim;
        var d = T.CreateTruncating(dim);
        for (var n = 0; n < rows; n++)
        {
            var xr = x.Slice(n * dim, dim);
            var dy = dOutput.Slice(n * dim, dim);
            var dxr = dx.Slice(n * dim, dim);
            var r = rstd[n];
            // Σ_j dout·w·x, the projection of the gradient on the input direction.
            var dot = T.Zero;
            for (var i = 0; i < dim; i++)
            {
                dot += dy[i] * weight[i] * xr[i];
            }

            var c = r * r * r * dot / d;
            for (var i = 0; i < dim; i++)
            {
                dxr[i] += r * dy[i] * weight[i] - c * xr[i];
            }

            if (!dWeight.IsEmpty)
            {
                for (var i = 0; i < dim; i++)
                {
                    dWeight[i] += dy[i] * xr[i] * r;
                }
            }
        }
    }

    // The same per row, vectorised: g = dout ⊙ w in stack scratch, dx += r·g − c·x, dw += r·(dout ⊙ x).
    private static void BackwardFloat(Span<float> dx, Span<float> dWeight, ReadOnlySpan<float> dOutput, ReadOnlySpan<float> x, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> rstd, int dim)
    {
        var rows = x.Length / dim;
        Span<float> g = stackalloc float[dim];
        Span<float> t = stackalloc float[dim];
        var w = weight[..dim];
        for (var n = 0; n < rows; n++)
        {
            var xr = x.Slice(n * dim, dim);
            var dy = dOutput.Slice(n * dim, dim);
            var dxr = dx.Slice(n * dim, dim);
            var r = rstd[n];
            TensorPrimitives.Multiply(dy, w, g);
            var c = r * r * r * TensorPrimitives.Dot(g, xr) / dim;
            TensorPrimitives.FusedMultiplyAdd(g, r, dxr, dxr);
            TensorPrimitives.FusedMultiplyAdd(xr, -c, dxr, dxr);
            if (!dWeight.IsEmpty)
            {
                TensorPrimitives.Multiply(dy, xr, t);
                TensorPrimitives.FusedMultiplyAdd(t, r, dWeight, dWeight);
            }
        }
    }

    // Forward per row: Σx² in one Vector512 accumulator, r = 1/√(Σx²/D + ε), out = (x·r)·w. Backward per row, the
    // BackwardFloat steps in registers: g = dout·w, c = r³·Σ(g·x)/D, dx = g·r + dx, dx = x·(−c) + dx, dw += (dout·x)·r.
    private sealed unsafe class FastJob : IParallelJob
    {
        // Fixed, whatever the machine: dw's per-chunk sums are added in this many pieces.
        private const int Chunks = 8;

        [ThreadStatic]
        private static FastJob? _instance;

        private float* _out;
        private float* _rstd;
        private float* _dWeight;
        private float* _dOutput;
        private float* _x;
        private float* _weight;
        private int _rows;
        private int _dim;
        private float _eps;
        private bool _backward;
        private float[] _partials = [];

        public static bool Fits(int dim) => Vector512.IsHardwareAccelerated && dim % 16 == 0 && dim > 0;

        // Forward: out, rstd written. Backward: out is dx (accumulated), dOutput read, dWeight accumulated unless empty.
        public static void Run(Span<float> output, Span<float> rstd, Span<float> dWeight, Span<float> dOutput, ReadOnlySpan<float> x, ReadOnlySpan<float> weight,
            int dim, float eps, bool backward)
        {
            var rows = x.Length / dim;
            if (output.Length < rows * dim || rstd.Length < rows || weight.Length < dim || (backward && dOutput.Length < rows * dim)
                || (backward && !dWeight.IsEmpty && dWeight.Length < dim))
            {
                throw new ArgumentException($"RMSNorm buffers are smaller than {rows} rows of {dim}");
            }

            var job = _instance ??= new FastJob();
            var wantWeight = backward && !dWeight.IsEmpty;
            if (wantWeight && job._partials.Length < Chunks * dim)
            {
                job._partials = new float[Chunks * dim];
            }

            fixed (float* po = output, pr = rstd, pdw = dWeight, pdo = dOutput, px = x, pw = weight, pp = job._partials)
            {
                job._out = po;
                job._rstd = pr;
                job._dWeight = wantWeight ? pp : null;
                job._dOutput = pdo;
                job._x = px;
                job._weight = pw;
                job._rows = rows;
                job._dim = dim;
                job._eps = eps;
                job._backward = backward;
                if (wantWeight)
                {
                    job._partials.AsSpan(0, Chunks * dim).Clear();
                }

                // Always Chunks chunks (the pool runs them on however many threads it has).
                WorkerPool.Shared.Run(job, Chunks);
                if (wantWeight)
                {
                    for (var c = 0; c < Chunks; c++)
                    {
                        TensorPrimitives.Add(dWeight[..dim], job._partials.AsSpan(c * dim, dim), dWeight[..dim]);
                    }
                }
            }
        }

        public void Execute(int chunk, int chunkCount)
        {
            var r0 = (int)((long)_rows * chunk / chunkCount);
            var r1 = (int)((long)_rows * (chunk + 1) / chunkCount);
            var d = _dim;
            for (var n = r0; n < r1; n++)
            {
                var x = _x + ((long)n * d);
                var acc = Vector512<float>.Zero;
                if (!_backward)
                {
                    for (var i = 0; i < d; i += 16)
                    {
                        var v = Vector512.Load(x + i);
                        acc = Vector512.FusedMultiplyAdd(v, v, acc);
                    }

                    var r = 1f / MathF.Sqrt((Vector512.Sum(acc) / d) + _eps);
                    _rstd[n] = r;
                    var vr = Vector512.Create(r);
                    var o = _out + ((long)n * d);
                    for (var i = 0; i < d; i += 16)
                    {
                        (Vector512.Load(x + i) * vr * Vector512.Load(_weight + i)).Store(o + i);
                    }

                    continue;
                }

                var dy = _dOutput + ((long)n * d);
                for (var i = 0; i < d; i += 16)
                {
                    acc = Vector512.FusedMultiplyAdd(Vector512.Load(dy + i) * Vector512.Load(_weight + i), Vector512.Load(x + i), acc);
                }

                var rr = _rstd[n];
                var c = rr * rr * rr * Vector512.Sum(acc) / d;
                var vrr = Vector512.Create(rr);
                var vc = Vector512.Create(-c);
                var dx = _out + ((long)n * d);
                var dw = _dWeight + ((long)chunk * d);
                for (var i = 0; i < d; i += 16)
                {
                    var xv = Vector512.Load(x + i);
                    var dyv = Vector512.Load(dy + i);
                    var g = dyv * Vector512.Load(_weight + i);
                    var dxv = Vector512.FusedMultiplyAdd(g, vrr, Vector512.Load(dx + i));
                    Vector512.FusedMultiplyAdd(xv, vc, dxv).Store(dx + i);
                    if (_dWeight != null)
                    {
                        Vector512.FusedMultiplyAdd(dyv * xv, vrr, Vector512.Load(dw + i)).Store(dw + i);
                    }
                }
            }
        }
    }
}
