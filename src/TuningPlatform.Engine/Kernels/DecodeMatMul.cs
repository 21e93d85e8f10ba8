// DecodeMatMul: C = A · Wᵀ (+ bias) for the few rows of a decode step (M ≤ 32 sequences, one token each).
//
//   A    [M, K]   activations, M ≤ 32
//   W    [N, K]   weight (fp32, or bf16 bits widened as they are loaded)
//   bias [N]      optional
//   C    [M, N]   output, overwritten
//
// Decode is bound by reading W, so every W element should be loaded once per step whatever M is, and each load
// should feed as many FMAs as possible. MatMul.MatVec streams W once too, but runs M separate dot products per W
// row (each with its own reduction), so at M = 8 it cost about 7× M = 1 (and M > 8 went to the GEMM, which packs
// all of W every call). Here groups of 8 A rows take a register tile of 2 W rows × 8 A rows, and the remaining rows
// a tile of 4 W rows × up to 4 A rows: 16 Vector512 accumulators either way, each 16-float step loading 2 or 4 W
// vectors and up to 8 A vectors (L1) for up to 16 FMAs; W rows past a multiple of 4 go through a 1-W-row tile with
// the same per-element order. A is copied into a 64-byte-aligned buffer and the parameter store aligns W, so no load
// straddles two cache lines. Every C[r, j] is one accumulator over K in 16-float
// steps, reduced by one fixed tree (Reduce4), then the K % 16 tail in scalar order, so it does not depend on M, on r or on
// which tile j falls in: a sequence gets the same logits whichever others share its step.
// W rows are split across the worker pool. Without AVX-512 (or with K < 16) it falls back to MatMul.Forward.
// Reference: MatMul.cs (the naive kernel is the reference in tests); llama.cpp's ggml_vec_dot for the row layout.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TuningPlatform.Engine.Threading;

namespace TuningPlatform.Engine.Kernels;

/// <summary>C = A · Wᵀ (+ bias) for up to <see cref="MaxRows"/> rows (batched decode), streaming W once.</summary>
public static unsafe class DecodeMatMul
{
    /// <summary>Most rows of A this kernel takes (a decode step of up to 32 sequences).</summary>
    public const int MaxRows = 32;

    // Below about 256K multiply-adds (a megabyte of weights at one row), waking a worker costs more than the work it
    // takes over (as MatMul).
    private const int MinParallelWork = 1 << 18;

    /// <summary>Whether the fast path runs on this machine for inner dimension <paramref name="k"/> (else MatMul.Forward does the work).</summary>
    public static bool IsAccelerated(int k) => Vector512.IsHardwareAccelerated && Avx512F.IsSupported && k >= 16;

    /// <summary>C[m, n] = A[m, k] · W[n, k]ᵀ (+ bias) with fp32 W, m ≤ <see cref="MaxRows"/>.</summary>
    public static void Forward(ReadOnlySpan<float> a, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, Span<float> c, int m, int n, int k, WorkerPool? pool = null)
    {
        Check(a.Length, w.Length, bias, c.Length, m, n, k);
        if (!IsAccelerated(k))
        {
            MatMul.Forward(a, w, bias, c, m, n, k, pool);
            return;
        }

        fixed (float* pa = a, pw = w, pb = bias, pc = c)
        {
            Run(pa, pw, null, bias.IsEmpty ? null : pb, pc, m, n, k, pool ?? WorkerPool.Shared);
        }
    }

    /// <summary>C[m, n] = A[m, k] · W16[n, k]ᵀ (+ bias) with W as bf16 bits, m ≤ <see cref="MaxRows"/>.</summary>
    public static void ForwardBf16(ReadOnlySpan<float> a, ReadOnlySpan<ushort> w16, ReadOnlySpan<float> bias, Span<float> c, int m, int n, int k, WorkerPool? pool = null)
    {
        Check(a.Length, w16.Length, bias, c.Length, m, n, k);
        if (!IsAccelerated(k))
        {
            MatMul.ForwardBf16(a, w16, bias, c, m, n, k, pool);
            return;
        }

        fixed (float* pa = a, pb = bias, pc = c)
        fixed (ushort* pw = w16)
        {
            Run(pa, null, pw, bias.IsEmpty ? null : pb, pc, m, n, k, pool ?? WorkerPool.Shared);
        }
    }

    private static void Check(int a, int w, ReadOnlySpan<float> bias, int c, int m, int n, int k)
    {
        if (m < 1 || m > MaxRows)
        {
            throw new ArgumentOutOfRangeException(nameof(m), $"{m} rows; this kernel takes 1 to {MaxRows} (use MatMul.Forward for more)");
        }

        if (a < (long)m * k || w < (long)n * k || c < (long)m * n || (!bias.IsEmpty && bias.Length < n))
        {
            throw new ArgumentException($"matmul shapes: A needs {(long)m * k} (has {a}), W {(long)n * k} ({w}), C {(long)m * n} ({c}), bias {n} or none ({bias.Length})");
        }
    }

    private static void Run(float* a, float* w, ushort* w16, float* bias, float* c, int m, int n, int k, WorkerPool pool)
    {
        var job = Job.Instance;
        // A (at most 32 rows, a few kilobytes) is copied into a 64-byte-aligned buffer with rows padded to 16 floats,
        // so none of its vector loads straddles two cache lines: a split load costs two of the two load slots a cycle
        // this loop lives on. Measured on one thread with W in L2 (768 × 288, 8 rows): 35.9 µs a call against 41.8.
        // Lanes stay where they were relative to each row's start, so results are unchanged to the bit.
        var stride = (k + 15) & ~15;
        var aligned = job.AlignedA(m * stride);
        for (var r = 0; r < m; r++)
        {
            new ReadOnlySpan<float>(a + ((long)r * k), k).CopyTo(new Span<float>(aligned + ((long)r * stride), k));
        }

        job.A = aligned;
        job.AStride = stride;
        job.W = w;
        job.W16 = w16;
        job.Bias = bias;
        job.C = c;
        job.M = m;
        job.N = n;
        job.K = k;
        // Chunks of whole 4-row W tiles, so the split never changes which tile a row falls in.
        var tiles = (n + 3) / 4;
        // The work is M·N·K multiply-adds: at 8 rows, a 288 × 288 projection is already worth a second thread.
        var chunks = (long)m * n * k < MinParallelWork ? 1 : Math.Min(tiles, pool.Threads * 4);
        pool.Run(job, chunks);
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic]
        private static Job? _instance;

        public float* A;
        public int AStride;
        public float* W;
        public ushort* W16;
        public float* Bias;
        public float* C;
        public int M;
        public int N;
        public int K;

        // The caller thread's aligned copy of A: a pinned array (it never moves) and the offset of its first
        // 64-byte-aligned element.
        private float[] _aligned = [];
        private int _alignedStart;

        public static Job Instance => _instance ??= new Job();

        public float* AlignedA(int length)
        {
            if (_aligned.Length < length + 16)
            {
                _aligned = GC.AllocateUninitializedArray<float>(length + 16, pinned: true);
                fixed (float* p = _aligned)
                {
                    _alignedStart = (int)((64 - ((nint)p & 63)) & 63) / sizeof(float);
                }
            }

            return (float*)Unsafe.AsPointer(ref _aligned[_alignedStart]);
        }

        public void Execute(int chunk, int chunkCount)
        {
            var tiles = (N + 3) / 4;
            var j0 = (int)((long)tiles * chunk / chunkCount) * 4;
            var j1 = Math.Min(N, (int)((long)tiles * (chunk + 1) / chunkCount) * 4);
            if (W16 != null)
            {
                Columns<Bf16Weights>(W16, j0, j1);
            }
            else
            {
                Columns<Fp32Weights>(W, j0, j1);
            }
        }

        // W rows j0..j1: the W tile outermost, so the second group of A rows finds its 4 W rows in L1 and W streams
        // from memory once; each group of up to 4 A rows takes the tile of exactly its size (no wasted FMAs). Only
        // the first group prefetches the next tile (the others find this one in L1).
        private void Columns<TW>(void* w, int j0, int j1)
            where TW : struct, IWeights
        {
            var j = j0;
            for (; j + 4 <= j1; j += 4)
            {
                // Groups of 8 A rows take the tile 4 W rows at a time as two 2 × 8 tiles: each W vector loaded feeds
                // 8 FMAs, so W streams from memory while the first group's FMAs run. With two 4 × 4 tiles instead, the
                // first read W from memory and the second ran its FMAs after, and the step at 8 rows took the sum of
                // both times rather than the larger.
                var r0 = 0;
                for (; r0 + 8 <= M; r0 += 8)
                {
                    var a = A + ((long)r0 * AStride);
                    var c = C + ((long)r0 * N);
                    if (r0 == 0)
                    {
                        Tile8<TW, Ahead>(a, w, c, j);
                        Tile8<TW, Ahead>(a, w, c, j + 2);
                    }
                    else
                    {
                        Tile8<TW, InCache>(a, w, c, j);
                        Tile8<TW, InCache>(a, w, c, j + 2);
                    }
                }

                for (; r0 < M; r0 += 4)
                {
                    var a = A + ((long)r0 * AStride);
                    var c = C + ((long)r0 * N);
                    if (r0 == 0)
                    {
                        Group<TW, Ahead>(a, w, c, j, M - r0, 4);
                    }
                    else
                    {
                        Group<TW, InCache>(a, w, c, j, M - r0, 4);
                    }
                }
            }

            for (; j < j1; j++)
            {
                for (var r0 = 0; r0 < M; r0 += 4)
                {
                    var a = A + ((long)r0 * AStride);
                    var c = C + ((long)r0 * N);
                    Group<TW, InCache>(a, w, c, j, M - r0, 1);
                }
            }
        }

        // A group of `rows` A rows (4 or more take the 4-row tile) against cols W rows from j: the tile of its exact size.
        private void Group<TW, TP>(float* a, void* w, float* c, int j, int rows, int cols)
            where TW : struct, IWeights
            where TP : struct, IPrefetch
        {
            switch (rows)
            {
                case 1: Tile<Count1, TW, TP>(a, w, c, j, cols); break;
                case 2: Tile<Count2, TW, TP>(a, w, c, j, cols); break;
                case 3: Tile<Count3, TW, TP>(a, w, c, j, cols); break;
                default: Tile<Count4, TW, TP>(a, w, c, j, cols); break;
            }
        }

        // C[0..TR, j..j+cols] for TR A rows and cols (1 or 4) W rows: one Vector512 accumulator per element over K in
        // 16-float steps. The generic arguments are structs, so the JIT compiles one copy per shape with the unused
        // rows' code removed. With the W row offsets kept as numbers, the JIT spilled three of them and reloaded each
        // per step (about 60 instructions a step for 16 FMAs), and the 4 × 4 tile ran at 85–145 GFLOP/s on two cores
        // where the FMAs allow about 300; the loop below keeps every address in a register.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Tile<TR, TW, TP>(float* a, void* w, float* c, int j, int cols)
            where TR : struct, ICount
            where TW : struct, IWeights
            where TP : struct, IPrefetch
        {
            var k = K;
            var k16 = (nint)(k & ~15);
            var rowBytes = (long)k * TW.Size;
            var w0 = (byte*)w + (j * rowBytes);
            var a1 = a + AStride;
            var a2 = a + (2L * AStride);
            var a3 = a + (3L * AStride);
            Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
            Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
            Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
            Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
            if (cols == 4)
            {
                // The next tile's four W rows follow these in memory: each step asks for its share of their cache
                // lines (one line per row's worth of this step's 16 elements), so a W read from memory (the head) is
                // not waiting on demand misses. Measured on stories15M's head (one thread, CPU time, loaded machine):
                // 1.27 ms a call at 1 row against 1.62 without, 3.3 ms at 8 rows against 5.3–10. Prefetching past the
                // last row is harmless (a prefetch never faults).
                // Two pointers walk W and A, and the other rows are reached through stride registers ([p + s],
                // [p + 2s], [p + 3s]), so the loop keeps every address in a register beside what the stores after it
                // need.
                var pw = w0;
                var pa = (byte*)a;
                var endW = w0 + (k16 * TW.Size);
                var ws = (nint)rowBytes;
                var ws3 = 3 * ws;
                var @as = (nint)AStride * sizeof(float);
                var as3 = 3 * @as;
                var next = w0 + (4 * rowBytes);
                for (; pw < endW; pw += 16 * TW.Size, pa += 16 * sizeof(float))
                {
                    if (TP.Enabled)
                    {
                        Sse.Prefetch0(next);
                        Sse.Prefetch0(next + ws);
                        Sse.Prefetch0(next + (2 * ws));
                        Sse.Prefetch0(next + ws3);
                        next += 16 * TW.Size;
                    }

                    var v0 = TW.Load(pw);
                    var v1 = TW.Load(pw + ws);
                    var v2 = TW.Load(pw + (2 * ws));
                    var v3 = TW.Load(pw + ws3);
                    var x = Vector512.Load((float*)pa);
                    c00 = Vector512.FusedMultiplyAdd(x, v0, c00);
                    c01 = Vector512.FusedMultiplyAdd(x, v1, c01);
                    c02 = Vector512.FusedMultiplyAdd(x, v2, c02);
                    c03 = Vector512.FusedMultiplyAdd(x, v3, c03);
                    if (TR.Value > 1)
                    {
                        x = Vector512.Load((float*)(pa + @as));
                        c10 = Vector512.FusedMultiplyAdd(x, v0, c10);
                        c11 = Vector512.FusedMultiplyAdd(x, v1, c11);
                        c12 = Vector512.FusedMultiplyAdd(x, v2, c12);
                        c13 = Vector512.FusedMultiplyAdd(x, v3, c13);
                    }

                    if (TR.Value > 2)
                    {
                        x = Vector512.Load((float*)(pa + (2 * @as)));
                        c20 = Vector512.FusedMultiplyAdd(x, v0, c20);
                        c21 = Vector512.FusedMultiplyAdd(x, v1, c21);
                        c22 = Vector512.FusedMultiplyAdd(x, v2, c22);
                        c23 = Vector512.FusedMultiplyAdd(x, v3, c23);
                    }

                    if (TR.Value > 3)
                    {
                        x = Vector512.Load((float*)(pa + as3));
                        c30 = Vector512.FusedMultiplyAdd(x, v0, c30);
                        c31 = Vector512.FusedMultiplyAdd(x, v1, c31);
                        c32 = Vector512.FusedMultiplyAdd(x, v2, c32);
                        c33 = Vector512.FusedMultiplyAdd(x, v3, c33);
                    }
                }
            }
            else
            {
                for (nint i = 0; i < k16; i += 16)
                {
                    var v0 = TW.Load(w0 + (i * TW.Size));
                    c00 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), v0, c00);
                    if (TR.Value > 1)
                    {
                        c10 = Vector512.FusedMultiplyAdd(Vector512.Load(a1 + i), v0, c10);
                    }

                    if (TR.Value > 2)
                    {
                        c20 = Vector512.FusedMultiplyAdd(Vector512.Load(a2 + i), v0, c20);
                    }

                    if (TR.Value > 3)
                    {
                        c30 = Vector512.FusedMultiplyAdd(Vector512.Load(a3 + i), v0, c30);
                    }
                }
            }

            Store<TW>(a, w, c, j, cols, c00, c01, c02, c03);
            if (TR.Value > 1)
            {
                Store<TW>(a1, w, c + N, j, cols, c10, c11, c12, c13);
            }

            if (TR.Value > 2)
            {
                Store<TW>(a2, w, c + (2L * N), j, cols, c20, c21, c22, c23);
            }

            if (TR.Value > 3)
            {
                Store<TW>(a3, w, c + (3L * N), j, cols, c30, c31, c32, c33);
            }
        }

        // C[0..8, j..j+2]: two W rows × eight A rows in 16 Vector512 accumulators, each over K in 16-float steps
        // like Tile's, and stored through the same reduction, so a row's result is the same to the bit whichever
        // tile computed it.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Tile8<TW, TP>(float* a, void* w, float* c, int j)
            where TW : struct, IWeights
            where TP : struct, IPrefetch
        {
            var k = K;
            var k16 = (nint)(k & ~15);
            var rowBytes = (long)k * TW.Size;
            var w0 = (byte*)w + (j * rowBytes);
            var pw = w0;
            var endW = w0 + (k16 * TW.Size);
            var ws = (nint)rowBytes;
            var pa = (byte*)a;
            var @as = (nint)AStride * sizeof(float);
            var as3 = 3 * @as;
            var pa4 = pa + (4 * @as);
            // The next two W rows, as Tile prefetches the next four.
            var next = w0 + (2 * rowBytes);
            Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default;
            Vector512<float> c20 = default, c21 = default, c30 = default, c31 = default;
            Vector512<float> c40 = default, c41 = default, c50 = default, c51 = default;
            Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default;
            for (; pw < endW; pw += 16 * TW.Size, pa += 16 * sizeof(float), pa4 += 16 * sizeof(float))
            {
                if (TP.Enabled)
                {
                    Sse.Prefetch0(next);
                    Sse.Prefetch0(next + ws);
                    next += 16 * TW.Size;
                }

                var v0 = TW.Load(pw);
                var v1 = TW.Load(pw + ws);
                var x = Vector512.Load((float*)pa);
                c00 = Vector512.FusedMultiplyAdd(x, v0, c00);
                c01 = Vector512.FusedMultiplyAdd(x, v1, c01);
                x = Vector512.Load((float*)(pa + @as));
                c10 = Vector512.FusedMultiplyAdd(x, v0, c10);
                c11 = Vector512.FusedMultiplyAdd(x, v1, c11);
                x = Vector512.Load((float*)(pa + (2 * @as)));
                c20 = Vector512.FusedMultiplyAdd(x, v0, c20);
                c21 = Vector512.FusedMultiplyAdd(x, v1, c21);
                x = Vector512.Load((float*)(pa + as3));
                c30 = Vector512.FusedMultiplyAdd(x, v0, c30);
                c31 = Vector512.FusedMultiplyAdd(x, v1, c31);
                x = Vector512.Load((float*)pa4);
                c40 = Vector512.FusedMultiplyAdd(x, v0, c40);
                c41 = Vector512.FusedMultiplyAdd(x, v1, c41);
                x = Vector512.Load((float*)(pa4 + @as));
                c50 = Vector512.FusedMultiplyAdd(x, v0, c50);
                c51 = Vector512.FusedMultiplyAdd(x, v1, c51);
                x = Vector512.Load((float*)(pa4 + (2 * @as)));
                c60 = Vector512.FusedMultiplyAdd(x, v0, c60);
                c61 = Vector512.FusedMultiplyAdd(x, v1, c61);
                x = Vector512.Load((float*)(pa4 + as3));
                c70 = Vector512.FusedMultiplyAdd(x, v0, c70);
                c71 = Vector512.FusedMultiplyAdd(x, v1, c71);
            }

            var zero = Vector512<float>.Zero;
            var stride = AStride;
            Store<TW>(a, w, c, j, 2, c00, c01, zero, zero);
            Store<TW>(a + stride, w, c + N, j, 2, c10, c11, zero, zero);
            Store<TW>(a + (2L * stride), w, c + (2L * N), j, 2, c20, c21, zero, zero);
            Store<TW>(a + (3L * stride), w, c + (3L * N), j, 2, c30, c31, zero, zero);
            Store<TW>(a + (4L * stride), w, c + (4L * N), j, 2, c40, c41, zero, zero);
            Store<TW>(a + (5L * stride), w, c + (5L * N), j, 2, c50, c51, zero, zero);
            Store<TW>(a + (6L * stride), w, c + (6L * N), j, 2, c60, c61, zero, zero);
            Store<TW>(a + (7L * stride), w, c + (7L * N), j, 2, c70, c71, zero, zero);
        }

        // C[r, j..j+cols] = Reduce4(accumulators) + the K % 16 tail in order + bias (a: row r of A, c: row r of C).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Store<TW>(float* a, void* w, float* c, int j, int cols, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2, Vector512<float> v3)
            where TW : struct, IWeights
        {
            var sums = Reduce4(v0, v1, v2, v3);
            for (var q = 0; q < cols; q++)
            {
                var sum = sums.GetElement(q);
                var row = (long)(j + q) * K;
                for (var i = K & ~15; i < K; i++)
                {
                    sum += a[i] * TW.At(w, row + i);
                }

                c[j + q] = Bias == null ? sum : sum + Bias[j + q];
            }
        }
    }

    // The 16-lane sums of four accumulators at once: halves added (lane i + lane i+8), then two rounds of pairwise
    // horizontal adds, then the 128-bit halves. Each sum follows the same fixed tree over its own lanes whatever the
    // other three hold, so a tile of one W row (v1..v3 unused) gives what a tile of four gives.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Reduce4(Vector512<float> v0, Vector512<float> v1, Vector512<float> v2, Vector512<float> v3)
    {
        var t0 = v0.GetLower() + v0.GetUpper();
        var t1 = v1.GetLower() + v1.GetUpper();
        var t2 = v2.GetLower() + v2.GetUpper();
        var t3 = v3.GetLower() + v3.GetUpper();
        var h = Avx.HorizontalAdd(Avx.HorizontalAdd(t0, t1), Avx.HorizontalAdd(t2, t3));
        return h.GetLower() + h.GetUpper();
    }

    // Whether a tile prefetches the next tile's W rows (the first group of A rows) or finds its own in L1 (the rest).
    private interface IPrefetch
    {
        static abstract bool Enabled { get; }
    }

    private readonly struct Ahead : IPrefetch
    {
        public static bool Enabled => true;
    }

    private readonly struct InCache : IPrefetch
    {
        public static bool Enabled => false;
    }

    // How W elements are stored: fp32, or bf16 bits widened to fp32 as they are loaded. Load takes a row's start and
    // an element index, so the JIT folds both into one addressing mode.
    private interface IWeights
    {
        /// <summary>Bytes per element.</summary>
        static abstract int Size { get; }

        static abstract Vector512<float> Load(byte* p);

        static abstract float At(void* w, long index);
    }

    private readonly struct Fp32Weights : IWeights
    {
        public static int Size => sizeof(float);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(byte* p) => Vector512.Load((float*)p);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float At(void* w, long index) => ((float*)w)[index];
    }

    private readonly struct Bf16Weights : IWeights
    {
        public static int Size => sizeof(ushort);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(byte* p) =>
            Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Vector256.Load((ushort*)p)), 16).AsSingle();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float At(void* w, long index) => BitConverter.Int32BitsToSingle(((ushort*)w)[index] << 16);
    }
}
