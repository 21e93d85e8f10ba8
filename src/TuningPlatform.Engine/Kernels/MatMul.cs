// MatMul: C = A · Wᵀ (+ bias), the shape of every linear layer.
//
//   A    [M, K]   activations, row-major (M = B·T rows)
//   W    [N, K]   weight, row-major as PyTorch stores nn.Linear.weight (N out features, K in)
//   bias [N]      optional
//   C    [M, N]   output, overwritten
//
// Three kernels, one contract:
//   Naive  — triple loop with a double accumulator: the reference the others are tested against.
//   Gemm   — blocked and packed: W is packed per (KC × NR) panel into k-major order so a register tile of
//            MR rows × NR columns (6 × 32 with Vector512, 6 × 16 with Vector256) is updated with broadcast
//            FMAs; panels are split across the worker pool. For M ≥ 2 (prefill, training).
//   MatVec — M ≤ 8 (decode, batched decode): for each row of W, its dot product with every row of A while
//            the W row sits in L1; rows of W split across the worker pool. Memory bound, so it streams W
//            once per call whatever M is, and skips GEMM's packing.
// Each fast kernel also takes W in bf16 (W16 [N, K] as raw ushort bits): elements are widened to fp32 as
// they are loaded (bits << 16), so compute stays fp32 while decode reads half the bytes.
// Reference: llm.c matmul_forward; BLIS's GotoBLAS loop structure for the packed kernel.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TuningPlatform.Engine.Threading;

namespace TuningPlatform.Engine.Kernels;

/// <summary>C = A · Wᵀ (+ bias): naive reference, packed GEMM and parallel matrix-vector kernels.</summary>
public static unsafe class MatMul
{
    private const int Mr = 6;
    private const int Kc = 256;
    // Below about a megabyte of weights, waking a worker costs more than the work it takes over.
    private const int MinParallelWork = 1 << 18;

    // Up to this many rows, decode-style matrix-vector beats packing W for the GEMM.
    private const int MaxMatVecRows = 8;

    [ThreadStatic]
    private static float[]? _packed;

    /// <summary>Reference kernel: C[m,n] = Σk A[m,k]·W[n,k] (+ bias[n]), accumulated in double.</summary>
    public static void Naive(ReadOnlySpan<float> a, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, Span<float> c, int m, int n, int k)
    {
        CheckShapes(a, w, bias, c, m, n, k);
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < n; j++)
            {
                var sum = bias.IsEmpty ? 0.0 : bias[j];
                for (var p = 0; p < k; p++)
                {
                    sum += (double)a[i * k + p] * w[j * k + p];
                }

                c[i * n + j] = (float)sum;
            }
        }
    }

    /// <summary>Reference kernel for bf16 weights: widens W and runs <see cref="Naive"/>.</summary>
    public static void NaiveBf16(ReadOnlySpan<float> a, ReadOnlySpan<ushort> w16, ReadOnlySpan<float> bias, Span<float> c, int m, int n, int k)
    {
        var w = new float[w16.Length];
        for (var i = 0; i < w.Length; i++)
        {
            w[i] = BitConverter.Int32BitsToSingle(w16[i] << 16);
        }

        Naive(a, w, bias, c, m, n, k);
    }

    /// <summary>Fast kernel with bf16 weights: matrix-vector for one row, packed GEMM otherwise.</summary>
    public static void ForwardBf16(ReadOnlySpan<float> a, ReadOnlySpan<ushort> w16, ReadOnlySpan<float> bias, Span<float> c, int m, int n, int k, WorkerPool? pool = null)
    {
        if (a.Length < (long)m * k || w16.Length < (long)n * k || c.Length < (long)m * n || (!bias.IsEmpty && bias.Length < n))
        {
            throw new ArgumentException($"matmul shapes: A needs {(long)m * k} (has {a.Length}), W {(long)n * k} ({w16.Length}), C {(long)m * n} ({c.Length}), bias {n} or none ({bias.Length})");
        }

        pool ??= WorkerPool.Shared;
        fixed (float* pa = a, pb = bias, pc = c)
        fixed (ushort* pw = w16)
        {
            if (m <= MaxMatVecRows)
            {
                RunMatVec(pa, null, pw, bias.IsEmpty ? null : pb, pc, m, n, k, pool);
            }
            else
            {
                RunGemm(pa, null, pw, bias.IsEmpty ? null : pb, pc, m, n, k, pool);
            }
        }
    }

    /// <summary>Fast kernel: matrix-vector for up to 8 rows (decode), packed GEMM otherwise.</summary>
    public static void Forward(ReadOnlySpan<float> a, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, Span<float> c, int m, int n, int k, WorkerPool? pool = null)
    {
        if (m <= MaxMatVecRows)
        {
            CheckShapes(a, w, bias, c, m, n, k);
            fixed (float* pa = a, pw = w, pb = bias, pc = c)
            {
                RunMatVec(pa, pw, null, bias.IsEmpty ? null : pb, pc, m, n, k, pool ?? WorkerPool.Shared);
            }
        }
        else
        {
            Gemm(a, w, bias, c, m, n, k, pool);
        }
    }

    /// <summary>y[n] = dot(x, W[n,:]) (+ bias[n]); rows split across the pool.</summary>
    public static void MatVec(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, Span<float> y, int n, int k, WorkerPool? pool = null)
    {
        CheckShapes(x, w, bias, y, 1, n, k);
        pool ??= WorkerPool.Shared;
        fixed (float* px = x, pw = w, pb = bias, py = y)
        {
            RunMatVec(px, pw, null, bias.IsEmpty ? null : pb, py, 1, n, k, pool);
        }
    }

    private static void RunMatVec(float* x, float* w, ushort* w16, float* bias, float* y, int m, int n, int k, WorkerPool pool)
    {
        var job = MatVecJob.Instance;
        job.M = m;
        job.X = x;
        job.W = w;
        job.W16 = w16;
        job.Bias = bias;
        job.Y = y;
        job.N = n;
        job.K = k;
        var chunks = (long)n * k < MinParallelWork ? 1 : pool.Threads * 4;
        pool.Run(job, chunks);
    }

    /// <summary>Blocked, packed GEMM: C[M,N] = A[M,K]·W[N,K]ᵀ (+ bias); column panels split across the pool.</summary>
    public static void Gemm(ReadOnlySpan<float> a, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, Span<float> c, int m, int n, int k, WorkerPool? pool = null)
    {
        CheckShapes(a, w, bias, c, m, n, k);
        if (!Vector256.IsHardwareAccelerated || k == 0)
        {
            Naive(a, w, bias, c, m, n, k);
            return;
        }

        pool ??= WorkerPool.Shared;
        fixed (float* pa = a, pw = w, pb = bias, pc = c)
        {
            RunGemm(pa, pw, null, bias.IsEmpty ? null : pb, pc, m, n, k, pool);
        }
    }

    private static void RunGemm(float* a, float* w, ushort* w16, float* bias, float* c, int m, int n, int k, WorkerPool pool)
    {
        if (!Vector256.IsHardwareAccelerated || k == 0)
        {
            var wide = new float[(long)n * k];
            for (var i = 0; i < wide.Length; i++)
            {
                wide[i] = w16 != null ? BitConverter.Int32BitsToSingle(w16[i] << 16) : w[i];
            }

            Naive(new ReadOnlySpan<float>(a, m * k), wide, bias == null ? default : new ReadOnlySpan<float>(bias, n), new Span<float>(c, m * n), m, n, k);
            return;
        }

        var nr = Vector512.IsHardwareAccelerated ? 32 : 16;
        var job = GemmJob.Instance;
        job.A = a;
        job.W = w;
        job.W16 = w16;
        job.Bias = bias;
        job.C = c;
        job.M = m;
        job.N = n;
        job.K = k;
        job.Nr = nr;
        var panels = (n + nr - 1) / nr;
        var chunks = (long)m * n * k < MinParallelWork ? 1 : Math.Min(panels, pool.Threads * 4);
        pool.Run(job, chunks);
    }

    private static void CheckShapes(ReadOnlySpan<float> a, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, Span<float> c, int m, int n, int k)
    {
        if (a.Length < (long)m * k || w.Length < (long)n * k || c.Length < (long)m * n || (!bias.IsEmpty && bias.Length < n))
        {
            throw new ArgumentException($"matmul shapes: A needs {(long)m * k} (has {a.Length}), W {(long)n * k} ({w.Length}), C {(long)m * n} ({c.Length}), bias {n} or none ({bias.Length})");
        }
    }

    private sealed class MatVecJob : IParallelJob
    {
        [ThreadStatic]
        private static MatVecJob? _instance;

        public float* X;
        public float* W;
        public ushort* W16;
        public float* Bias;
        public float* Y;
        public int M;
        public int N;
        public int K;

        // One job object per calling thread: reused, so decode allocates nothing.
        public static MatVecJob Instance => _instance ??= new MatVecJob();

        public void Execute(int chunk, int chunkCount)
        {
            var start = (int)((long)N * chunk / chunkCount);
            var end = (int)((long)N * (chunk + 1) / chunkCount);
            for (var j = start; j < end; j++)
            {
                // Row j of W is read from memory once; the other M − 1 dot products find it in L1.
                var b = Bias == null ? 0f : Bias[j];
                for (var r = 0; r < M; r++)
                {
                    var dot = W16 != null
                        ? DotBf16(X + (long)r * K, W16 + (long)j * K, K)
                        : TensorPrimitives.Dot(new ReadOnlySpan<float>(X + (long)r * K, K), new ReadOnlySpan<float>(W + (long)j * K, K));
                    Y[(long)r * N + j] = dot + b;
                }
            }
        }

        // dot(x, widen(w16)): 32 bf16 per step, widened by a 16-bit shift into two fp32 vectors.
        private static float DotBf16(float* x, ushort* w, int k)
        {
            var i = 0;
            var sum = 0f;
            if (Vector512.IsHardwareAccelerated && k >= 32)
            {
                Vector512<float> acc0 = default, acc1 = default;
                for (; i <= k - 32; i += 32)
                {
                    var raw = Vector512.Load(w + i);
                    var lo = Vector512.ShiftLeft(Vector512.WidenLower(raw), 16).AsSingle();
                    var hi = Vector512.ShiftLeft(Vector512.WidenUpper(raw), 16).AsSingle();
                    acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), lo, acc0);
                    acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 16), hi, acc1);
                }

                sum = Vector512.Sum(acc0 + acc1);
            }
            else if (Vector256.IsHardwareAccelerated && k >= 16)
            {
                Vector256<float> acc0 = default, acc1 = default;
                for (; i <= k - 16; i += 16)
                {
                    var raw = Vector256.Load(w + i);
                    var lo = Vector256.ShiftLeft(Vector256.WidenLower(raw), 16).AsSingle();
                    var hi = Vector256.ShiftLeft(Vector256.WidenUpper(raw), 16).AsSingle();
                    acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), lo, acc0);
                    acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 8), hi, acc1);
                }

                sum = Vector256.Sum(acc0 + acc1);
            }

            for (; i < k; i++)
            {
                sum += x[i] * BitConverter.Int32BitsToSingle(w[i] << 16);
            }

            return sum;
        }
    }

    private sealed class GemmJob : IParallelJob
    {
        [ThreadStatic]
        private static GemmJob? _instance;

        public float* A;
        public float* W;
        public ushort* W16;
        public float* Bias;
        public float* C;
        public int M;
        public int N;
        public int K;
        public int Nr;

        public static GemmJob Instance => _instance ??= new GemmJob();

        public void Execute(int chunk, int chunkCount)
        {
            var panels = (N + Nr - 1) / Nr;
            var p0 = (int)((long)panels * chunk / chunkCount);
            var p1 = (int)((long)panels * (chunk + 1) / chunkCount);
            var packed = _packed ??= GC.AllocateUninitializedArray<float>(Kc * 32, pinned: true);
            Span<float> edge = stackalloc float[Mr * 32];
            fixed (float* pp = packed, pe = edge)
            {
                for (var p = p0; p < p1; p++)
                {
                    var n0 = p * Nr;
                    var nb = Math.Min(Nr, N - n0);
                    for (var k0 = 0; k0 < K; k0 += Kc)
                    {
                        var kc = Math.Min(Kc, K - k0);
                        Pack(pp, n0, nb, k0, kc);
                        for (var m0 = 0; m0 < M; m0 += Mr)
                        {
                            var mb = Math.Min(Mr, M - m0);
                            // Full tiles write C in place; edge tiles go through a scratch tile.
                            var direct = nb == Nr && mb == Mr;
                            var dst = direct ? C + (long)m0 * N + n0 : pe;
                            var ldc = direct ? N : Nr;
                            if (!direct)
                            {
                                for (var i = 0; i < mb; i++)
                                {
                                    for (var j = 0; j < nb; j++)
                                    {
                                        pe[i * Nr + j] = C[(long)(m0 + i) * N + n0 + j];
                                    }
                                }
                            }

                            var first = k0 == 0;
                            if (Nr == 32)
                            {
                                Kernel512(A + (long)m0 * K + k0, K, pp, kc, dst, ldc, mb, first);
                            }
                            else
                            {
                                Kernel256(A + (long)m0 * K + k0, K, pp, kc, dst, ldc, mb, first);
                            }

                            if (!direct)
                            {
                                for (var i = 0; i < mb; i++)
                                {
                                    for (var j = 0; j < nb; j++)
                                    {
                                        C[(long)(m0 + i) * N + n0 + j] = pe[i * Nr + j];
                                    }
                                }
                            }
                        }
                    }

                    if (Bias != null)
                    {
                        for (var i = 0; i < M; i++)
                        {
                            for (var j = 0; j < nb; j++)
                            {
                                C[(long)i * N + n0 + j] += Bias[n0 + j];
                            }
                        }
                    }
                }
            }
        }

        // packed[kk*Nr + j] = W[n0 + j, k0 + kk]; columns past N are zero so the kernel needs no edge case.
        private void Pack(float* packed, int n0, int nb, int k0, int kc)
        {
            for (var j = 0; j < Nr; j++)
            {
                if (j < nb && W16 != null)
                {
                    var src = W16 + (long)(n0 + j) * K + k0;
                    for (var kk = 0; kk < kc; kk++)
                    {
                        packed[kk * Nr + j] = BitConverter.Int32BitsToSingle(src[kk] << 16);
                    }
                }
                else if (j < nb)
                {
                    var src = W + (long)(n0 + j) * K + k0;
                    for (var kk = 0; kk < kc; kk++)
                    {
                        packed[kk * Nr + j] = src[kk];
                    }
                }
                else
                {
                    for (var kk = 0; kk < kc; kk++)
                    {
                        packed[kk * Nr + j] = 0;
                    }
                }
            }
        }

        // Register tile: up to 6 rows × 32 columns = 12 Vector512 accumulators; each k broadcasts one A
        // element per row against two packed W vectors. Rows beyond mb read row 0 and are not stored.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Kernel512(float* a, int lda, float* b, int kc, float* c, int ldc, int mb, bool first)
        {
            var a0 = a;
            var a1 = mb > 1 ? a + lda : a;
            var a2 = mb > 2 ? a + 2 * lda : a;
            var a3 = mb > 3 ? a + 3 * lda : a;
            var a4 = mb > 4 ? a + 4 * lda : a;
            var a5 = mb > 5 ? a + 5 * lda : a;
            Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
            Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
            for (var kk = 0; kk < kc; kk++)
            {
                var b0 = Vector512.Load(b + kk * 32);
                var b1 = Vector512.Load(b + kk * 32 + 16);
                var x = Vector512.Create(a0[kk]);
                c00 = Vector512.FusedMultiplyAdd(x, b0, c00);
                c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
                x = Vector512.Create(a1[kk]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10);
                c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
                x = Vector512.Create(a2[kk]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20);
                c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
                x = Vector512.Create(a3[kk]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30);
                c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
                x = Vector512.Create(a4[kk]);
                c40 = Vector512.FusedMultiplyAdd(x, b0, c40);
                c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
                x = Vector512.Create(a5[kk]);
                c50 = Vector512.FusedMultiplyAdd(x, b0, c50);
                c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            }

            Store512(c, ldc, 0, mb, first, c00, c01);
            Store512(c, ldc, 1, mb, first, c10, c11);
            Store512(c, ldc, 2, mb, first, c20, c21);
            Store512(c, ldc, 3, mb, first, c30, c31);
            Store512(c, ldc, 4, mb, first, c40, c41);
            Store512(c, ldc, 5, mb, first, c50, c51);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Store512(float* c, int ldc, int row, int mb, bool first, Vector512<float> v0, Vector512<float> v1)
        {
            if (row >= mb)
            {
                return;
            }

            var p = c + (long)row * ldc;
            if (!first)
            {
                v0 += Vector512.Load(p);
                v1 += Vector512.Load(p + 16);
            }

            v0.Store(p);
            v1.Store(p + 16);
        }

        // The same tile with Vector256 (6 rows × 16 columns) for machines without AVX-512.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Kernel256(float* a, int lda, float* b, int kc, float* c, int ldc, int mb, bool first)
        {
            var a0 = a;
            var a1 = mb > 1 ? a + lda : a;
            var a2 = mb > 2 ? a + 2 * lda : a;
            var a3 = mb > 3 ? a + 3 * lda : a;
            var a4 = mb > 4 ? a + 4 * lda : a;
            var a5 = mb > 5 ? a + 5 * lda : a;
            Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
            Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
            for (var kk = 0; kk < kc; kk++)
            {
                var b0 = Vector256.Load(b + kk * 16);
                var b1 = Vector256.Load(b + kk * 16 + 8);
                var x = Vector256.Create(a0[kk]);
                c00 = Vector256.FusedMultiplyAdd(x, b0, c00);
                c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
                x = Vector256.Create(a1[kk]);
                c10 = Vector256.FusedMultiplyAdd(x, b0, c10);
                c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
                x = Vector256.Create(a2[kk]);
                c20 = Vector256.FusedMultiplyAdd(x, b0, c20);
                c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
                x = Vector256.Create(a3[kk]);
                c30 = Vector256.FusedMultiplyAdd(x, b0, c30);
                c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
                x = Vector256.Create(a4[kk]);
                c40 = Vector256.FusedMultiplyAdd(x, b0, c40);
                c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
                x = Vector256.Create(a5[kk]);
                c50 = Vector256.FusedMultiplyAdd(x, b0, c50);
                c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
            }

            Store256(c, ldc, 0, mb, first, c00, c01);
            Store256(c, ldc, 1, mb, first, c10, c11);
            Store256(c, ldc, 2, mb, first, c20, c21);
            Store256(c, ldc, 3, mb, first, c30, c31);
            Store256(c, ldc, 4, mb, first, c40, c41);
            Store256(c, ldc, 5, mb, first, c50, c51);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Store256(float* c, int ldc, int row, int mb, bool first, Vector256<float> v0, Vector256<float> v1)
        {
            if (row >= mb)
            {
                return;
            }

            var p = c + (long)row * ldc;
            if (!first)
            {
                v0 += Vector256.Load(p);
                v1 += Vector256.Load(p + 8);
            }

            v0.Store(p);
            v1.Store(p + 8);
        }
    }
}
