// The three matrix products of a linear layer's forward and backward pass:
//   NT: C[M, N] (+)= A[M, K] · B[N, K]ᵀ     forward    y  = x · Wᵀ
//   NN: C[M, N] (+)= A[M, K] · B[K, N]      backward   dx = dy · W
//   TN: C[M, N] (+)= A[K, M]ᵀ · B[K, N]     backward   dW = dyᵀ · x
// Row-major throughout; accumulate adds into C (backward accumulates into gradients), otherwise C is
// overwritten.
//
// Two kernels per product, one contract:
//   Naive* — generic over float and double, accumulated in double: the reference, and what float64
//            finite-difference checks run on.
//   fast   — fp32 only: PackedGemm reads every operand in place through strides (no transpose, and C
//            accumulated directly). Without AVX-512 the operands are transposed into thread-local
//            scratch so that every product is the NT shape that Kernels/MatMul.Gemm computes.
// Generic callers dispatch through NT/NN/TN: float goes fast, any other T goes naive.
// Reference: llm.c matmul_backward; BLAS gemm transposition flags.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Threading;

namespace TuningPlatform.Engine.Training.Kernels;

/// <summary>C (+)= A·Bᵀ, A·B, Aᵀ·B for training: naive generic references and fp32 fast paths over the packed GEMM.</summary>
public static unsafe class TrainingGemm
{
    [ThreadStatic]
    private static float[]? _scratchA;

    [ThreadStatic]
    private static float[]? _scratchB;

    [ThreadStatic]
    private static float[]? _scratchC;

    /// <summary>C[M,N] (+)= A[M,K]·B[N,K]ᵀ.</summary>
    public static void NT<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> c, int m, int n, int k, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(a.Length, (long)m * k, b.Length, (long)n * k, c.Length, (long)m * n);
        if (typeof(T) != typeof(float) || m == 0 || n == 0)
        {
            NaiveNT(a, b, c, m, n, k, accumulate);
            return;
        }

        var af = MemoryMarshal.Cast<T, float>(a);
        var bf = MemoryMarshal.Cast<T, float>(b);
        var cf = MemoryMarshal.Cast<T, float>(c);
        if (PackedGemm.IsSupported)
        {
            fixed (float* pa = af, pb = bf, pc = cf)
            {
                PackedGemm.Run(pa, k, 1, pb, k, GemmLayout.NK, pc, n, m, n, k, 1f, accumulate, WorkerPool.Shared);
            }

            return;
        }

        if (!accumulate)
        {
            MatMul.Gemm(af, bf, default, cf, m, n, k);
            return;
        }

        var tmp = Scratch(ref _scratchC, m * n);
        MatMul.Gemm(af, bf, default, tmp, m, n, k);
        TensorPrimitives.Add(cf[..(m * n)], tmp, cf);
    }

    /// <summary>C[M,N] (+)= A[M,K]·B[K,N].</summary>
    public static void NN<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> c, int m, int n, int k, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(a.Length, (long)m * k, b.Length, (long)k * n, c.Length, (long)m * n);
        if (typeof(T) != typeof(float) || m == 0 || n == 0)
        {
            NaiveNN(a, b, c, m, n, k, accumulate);
            return;
        }

        if (PackedGemm.IsSupported)
        {
            fixed (T* pa = a, pb = b, pc = c)
            {
                PackedGemm.Run((float*)pa, k, 1, (float*)pb, n, GemmLayout.KN, (float*)pc, n, m, n, k, 1f, accumulate, WorkerPool.Shared);
            }

            return;
        }

        // A·B = A·(Bᵀ)ᵀ: transpose B [K, N] to [N, K] and run the NT kernel.
        var bt = Scratch(ref _scratchB, n * k);
        Transpose(MemoryMarshal.Cast<T, float>(b), bt, k, n);
        NT(MemoryMarshal.Cast<T, float>(a), bt, MemoryMarshal.Cast<T, float>(c), m, n, k, accumulate);
    }

    /// <summary>C[M,N] (+)= A[K,M]ᵀ·B[K,N].</summary>
    public static void TN<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> c, int m, int n, int k, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(a.Length, (long)k * m, b.Length, (long)k * n, c.Length, (long)m * n);
        if (typeof(T) != typeof(float) || m == 0 || n == 0)
        {
            NaiveTN(a, b, c, m, n, k, accumulate);
            return;
        }

        if (PackedGemm.IsSupported)
        {
            fixed (T* pa = a, pb = b, pc = c)
            {
                PackedGemm.Run((float*)pa, 1, m, (float*)pb, n, GemmLayout.KN, (float*)pc, n, m, n, k, 1f, accumulate, WorkerPool.Shared);
            }

            return;
        }

        // Aᵀ·B = (Aᵀ)·(Bᵀ)ᵀ: both operands transposed to K-contiguous rows.
        var at = Scratch(ref _scratchA, m * k);
        var bt = Scratch(ref _scratchB, n * k);
        Transpose(MemoryMarshal.Cast<T, float>(a), at, k, m);
        Transpose(MemoryMarshal.Cast<T, float>(b), bt, k, n);
        NT(at, bt, MemoryMarshal.Cast<T, float>(c), m, n, k, accumulate);
    }

    /// <summary>Reference C[M,N] (+)= A[M,K]·B[N,K]ᵀ, double accumulator.</summary>
    public static void NaiveNT<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> c, int m, int n, int k, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < n; j++)
            {
                var sum = 0.0;
                for (var p = 0; p < k; p++)
                {
                    sum += double.CreateTruncating(a[i * k + p]) * double.CreateTruncating(b[j * k + p]);
                }

                Store(c, i * n + j, sum, accumulate);
            }
        }
    }

    /// <summary>Reference C[M,N] (+)= A[M,K]·B[K,N], double accumulator.</summary>
    public static void NaiveNN<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> c, int m, int n, int k, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < n; j++)
            {
                var sum = 0.0;
                for (var p = 0; p < k; p++)
                {
                    sum += double.CreateTruncating(a[i * k + p]) * double.CreateTruncating(b[p * n + j]);
                }

                Store(c, i * n + j, sum, accumulate);
            }
        }
    }

    /// <summary>Reference C[M,N] (+)= A[K,M]ᵀ·B[K,N], double accumulator.</summary>
    public static void NaiveTN<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> c, int m, int n, int k, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < n; j++)
            {
                var sum = 0.0;
                for (var p = 0; p < k; p++)
                {
                    sum += double.CreateTruncating(a[p * m + i]) * double.CreateTruncating(b[p * n + j]);
                }

                Store(c, i * n + j, sum, accumulate);
            }
        }
    }

    /// <summary>dst[C, R] = src[R, C]ᵀ, in 32×32 tiles so both sides stay in cache.</summary>
    public static void Transpose(ReadOnlySpan<float> src, Span<float> dst, int rows, int cols)
    {
        const int Tile = 32;
        for (var r0 = 0; r0 < rows; r0 += Tile)
        {
            var r1 = Math.Min(rows, r0 + Tile);
            for (var c0 = 0; c0 < cols; c0 += Tile)
            {
                var c1 = Math.Min(cols, c0 + Tile);
                for (var r = r0; r < r1; r++)
                {
                    for (var c = c0; c < c1; c++)
                    {
                        dst[c * rows + r] = src[r * cols + c];
                    }
                }
            }
        }
    }

    private static void Store<T>(Span<T> c, int index, double sum, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        c[index] = accumulate ? c[index] + T.CreateTruncating(sum) : T.CreateTruncating(sum);
    }

    private static Span<float> Scratch(ref float[]? buffer, int length)
    {
        if (buffer is null || buffer.Length < length)
        {
            buffer = new float[length];
        }

        return buffer.AsSpan(0, length);
    }

    private static void Check(int a, long needA, int b, long needB, int c, long needC)
    {
        if (a < needA || b < needB || c < needC)
        {
            throw new ArgumentException($"matmul shapes: A needs {needA} (has {a}), B {needB} ({b}), C {needC} ({c})");
        }
    }
}
