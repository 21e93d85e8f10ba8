// SwiGLU, training pair:
//   forward   out = silu(g) ⊙ u,   silu(g) = g · σ(g)
//   backward  dg += dout ⊙ u ⊙ σ(g) · (1 + g · (1 − σ(g))),   du += dout ⊙ silu(g)
//
//   gate g [N, F]   x · W_gateᵀ
//   up   u [N, F]   x · W_upᵀ
//   out    [N, F]   fed to W_down
//
// Cached for backward: gate and up (σ(g) is recomputed). Backward accumulates. fp32 with AVX-512 runs one fused
// Vector512 pass per direction, split into element ranges across the worker pool (each element is computed alone,
// so the split changes nothing); other fp32 machines use TensorPrimitives in blocks of 512; other types run the
// scalar loop.
// Reference: HF LlamaMLP; Shazeer 2020, "GLU Variants Improve Transformer".
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TuningPlatform.Engine.Threading;

namespace TuningPlatform.Engine.Training.Ops;

/// <summary>SiLU-gated linear unit and its gradient.</summary>
public static class SwiGluOp
{
    /// <summary>out = g·σ(g)·u elementwise.</summary>
    public static void Forward<T>(Span<T> output, ReadOnlySpan<T> gate, ReadOnlySpan<T> up)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float) && Vector512.IsHardwareAccelerated)
        {
            FastJob.Run(MemoryMarshal.Cast<T, float>(output), default, default, MemoryMarshal.Cast<T, float>(gate), MemoryMarshal.Cast<T, float>(up), backward: false);
            return;
        }

        if (typeof(T) == typeof(float))
        {
            var o = MemoryMarshal.Cast<T, float>(output)[..gate.Length];
            TensorPrimitives.Sigmoid(MemoryMarshal.Cast<T, float>(gate), o);
            TensorPrimitives.Multiply(o, MemoryMarshal.Cast<T, float>(gate), o);
            TensorPrimitives.Multiply(o, MemoryMarshal.Cast<T, float>(up)[..gate.Length], o);
            return;
        }

        for (var i = 0; i < gate.Length; i++)
        {
            var g = gate[i];
            output[i] = g / (T.One + T.Exp(-g)) * up[i];
        }
    }

    /// <summary>Accumulates the gradients of gate and up.</summary>
    public static void Backward<T>(Span<T> dGate, Span<T> dUp, ReadOnlySpan<T> dOutput, ReadOnlySpan<T> gate, ReadOnlySpan<T> up)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float) && Vector512.IsHardwareAccelerated)
        {
            FastJob.Run(MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(MemoryMarshal.Cast<T, float>(dOutput)), dOutput.Length), MemoryMarshal.Cast<T, float>(dGate), MemoryMarshal.Cast<T, float>(dUp),
                MemoryMarshal.Cast<T, float>(gate), MemoryMarshal.Cast<T, float>(up), backward: true);
            return;
        }

        if (typeof(T) == typeof(float))
        {
            BackwardFloat(MemoryMarshal.Cast<T, float>(dGate), MemoryMarshal.Cast<T, float>(dUp), MemoryMarshal.Cast<T, float>(dOutput),
                MemoryMarshal.Cast<T, float>(gate), MemoryMarshal.Cast<T, float>(up));
            return;
        }

        for (var i = 0; i < gate.Length; i++)
        {
            var g = gate[i];
            var sig = T.One / (T.One + T.Exp(-g));
            var dy = dOutput[i];
            dGate[i] += dy * up[i] * sig * (T.One + g * (T.One - sig));
            dUp[i] += dy * g * sig;
        }
    }

    // dg += dy·u·(σ + silu·(1 − σ)),  du += dy·silu,  blockwise.
    private static void BackwardFloat(Span<float> dGate, Span<float> dUp, ReadOnlySpan<float> dOutput, ReadOnlySpan<float> gate, ReadOnlySpan<float> up)
    {
        const int Block = 512;
        Span<float> sig = stackalloc float[Block];
        Span<float> silu = stackalloc float[Block];
        Span<float> t = stackalloc float[Block];
        for (var i0 = 0; i0 < gate.Length; i0 += Block)
        {
            var n = Math.Min(Block, gate.Length - i0);
            var s = sig[..n];
            var u = silu[..n];
            var w = t[..n];
            var g = gate.Slice(i0, n);
            var dy = dOutput.Slice(i0, n);
            TensorPrimitives.Sigmoid(g, s);
            TensorPrimitives.Multiply(g, s, u);
            var du = dUp.Slice(i0, n);
            TensorPrimitives.FusedMultiplyAdd(dy, u, du, du);
            // w = σ + silu·(1 − σ) = σ + silu − silu·σ
            TensorPrimitives.Multiply(u, s, w);
            TensorPrimitives.Subtract(u, w, w);
            TensorPrimitives.Add(w, s, w);
            TensorPrimitives.Multiply(w, up.Slice(i0, n), w);
            var dg = dGate.Slice(i0, n);
            TensorPrimitives.FusedMultiplyAdd(dy, w, dg, dg);
        }
    }

    // Forward: out = (σ(g)·g)·u. Backward: silu = g·σ; du += dy·silu; w = (silu − silu·σ + σ)·u; dg += dy·w — the
    // operations of the TensorPrimitives path in the same order, in registers, 16 elements at a time.
    private sealed unsafe class FastJob : IParallelJob
    {
        // Elements per chunk at least: below this a second thread costs more than it saves.
        private const int MinChunk = 1 << 14;

        [ThreadStatic]
        private static FastJob? _instance;

        // Forward: the output; backward: dout.
        private float* _y;
        private float* _dGate;
        private float* _dUp;
        private float* _gate;
        private float* _up;
        private int _length;
        private bool _backward;

        public static void Run(Span<float> y, Span<float> dGate, Span<float> dUp, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, bool backward)
        {
            var n = gate.Length;
            if (y.Length < n || up.Length < n || (backward && (dGate.Length < n || dUp.Length < n)))
            {
                throw new ArgumentException($"SwiGLU buffers are shorter than the gate ({n} elements)");
            }

            var job = _instance ??= new FastJob();
            fixed (float* py = y, pdg = dGate, pdu = dUp, pg = gate, pu = up)
            {
                job._y = py;
                job._dGate = pdg;
                job._dUp = pdu;
                job._gate = pg;
                job._up = pu;
                job._length = n;
                job._backward = backward;
                var pool = WorkerPool.Shared;
                pool.Run(job, Math.Max(1, Math.Min(pool.Threads * 2, n / MinChunk)));
            }
        }

        public void Execute(int chunk, int chunkCount)
        {
            // Chunk bounds on multiples of 16, so only the last chunk has a tail.
            var vectors = _length / 16;
            var i0 = (int)((long)vectors * chunk / chunkCount) * 16;
            var i1 = chunk == chunkCount - 1 ? _length : (int)((long)vectors * (chunk + 1) / chunkCount) * 16;
            var one = Vector512<float>.One;
            var i = i0;
            for (; i + 16 <= i1; i += 16)
            {
                var g = Vector512.Load(_gate + i);
                var s = one / (one + Vector512.Exp(-g));
                var u = Vector512.Load(_up + i);
                if (!_backward)
                {
                    (s * g * u).Store(_y + i);
                    continue;
                }

                var dy = Vector512.Load(_y + i);
                var silu = g * s;
                Vector512.FusedMultiplyAdd(dy, silu, Vector512.Load(_dUp + i)).Store(_dUp + i);
                var w = (silu - (silu * s) + s) * u;
                Vector512.FusedMultiplyAdd(dy, w, Vector512.Load(_dGate + i)).Store(_dGate + i);
            }

            for (; i < i1; i++)
            {
                var g = _gate[i];
                var s = 1f / (1f + MathF.Exp(-g));
                if (!_backward)
                {
                    _y[i] = s * g * _up[i];
                    continue;
                }

                var silu = g * s;
                _dUp[i] = MathF.FusedMultiplyAdd(_y[i], silu, _dUp[i]);
                _dGate[i] = MathF.FusedMultiplyAdd(_y[i], (silu - (silu * s) + s) * _up[i], _dGate[i]);
            }
        }
    }
}
