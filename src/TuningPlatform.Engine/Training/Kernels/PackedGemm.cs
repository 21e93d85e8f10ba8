// Strided packed GEMM for training: C[M, N] (+)= α · op(A) · op(B) with any layout of A and B, so that
// no product of the training step transposes a whole operand first.
//
//   A   element (i, p) at a[i·aRow + p·aCol]     [M, K] (aRow = K, aCol = 1) or Aᵀ of [K, M] (aRow = 1, aCol = M)
//   B   element (p, j) at b[j·ldb + p]  (NK: B stored [N, K], a weight as nn.Linear holds it)
//                      or b[p·ldb + j]  (KN: B stored [K, N])
//       or an NF4 matrix in either layout, dequantised panel by panel as it is packed (never whole)
//   C   element (i, j) at c[i·ldc + j]
//
// Loop structure (BLIS/GotoBLAS): a block of up to 240 rows × Kc of A is packed into 6-row micro-panels
// (k-major) when A is not contiguous in k (a transposed A: dW = dyᵀ·x); rows contiguous in k are read in
// place as six streams. Then B per panel of 32 columns × Kc into k-major order (zero
// columns past N), and a 6 × 32 register tile of Vector512 accumulators runs over the block's row tiles
// with six broadcasts of packed A and two packed B loads per k; α scales each k-block's partial sum as it
// is added to C. Work is split across the worker pool by rows when M is the long side (every
// chunk packs the panels it needs), otherwise by column panels. With no pool the call runs on the calling
// thread: the attention kernel uses that from inside its own pool chunks.
// Requires AVX-512 (IsSupported); callers keep their portable path otherwise.
// Reference: Goto & van de Geijn 2008, "Anatomy of high-performance matrix multiplication"; BLIS's
// packing of A and B into micro-panels.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TuningPlatform.Engine.Threading;
using TuningPlatform.Engine.Training.Quantization;

namespace TuningPlatform.Engine.Training.Kernels;

/// <summary>How a B operand is laid out.</summary>
public enum GemmLayout
{
    /// <summary>B stored [N, K] (row j holds column j of op(B)): a weight in nn.Linear layout for y = x·Wᵀ.</summary>
    NK,

    /// <summary>B stored [K, N], row-major.</summary>
    KN,
}

/// <summary>C (+)= α·A·B over strided fp32 operands and fp32 or NF4 B, packed and pool-parallel (AVX-512).</summary>
public static unsafe class PackedGemm
{
    private const int Mr = 6;
    private const int Nr = 32;
    private const int MaxKc = 320;

    // Below this many multiply-adds a second thread costs more than it saves.
    private const long MinParallelWork = 1 << 20;

    // Row tiles per packed block of A: 40 × 6 rows × up to 320 k = 300 KB, resident in L2.
    private const int McTiles = 40;

    [ThreadStatic]
    private static float[]? _packed;

    [ThreadStatic]
    private static float[]? _packedA;

    [ThreadStatic]
    private static float[]? _transposed;

    // Elements of B beyond which it no longer fits in cache (4 M floats = 16 MB).
    private const long LargeB = 1 << 22;

    /// <summary>True where the kernel runs (Vector512 hardware acceleration).</summary>
    public static bool IsSupported => Vector512.IsHardwareAccelerated;

    /// <summary>C[i·ldc + j] (+)= α Σ_p A(i, p)·B(p, j) with fp32 B; <paramref name="pool"/> null runs on this thread.</summary>
    public static void Run(float* a, long aRow, long aCol, float* b, long ldb, GemmLayout layout, float* c, long ldc,
        int m, int n, int k, float alpha, bool accumulate, WorkerPool? pool)
    {
        var job = GemmJob.Instance;
        job.B = b;
        job.Nf4 = null;
        Dispatch(job, a, aRow, aCol, ldb, layout, c, ldc, m, n, k, alpha, accumulate, pool);
    }

    /// <summary>As <see cref="Run(float*, long, long, float*, long, GemmLayout, float*, long, int, int, int, float, bool, WorkerPool?)"/> with B an NF4 matrix (row stride ldb in elements), dequantised per packed panel.</summary>
    public static void Run(float* a, long aRow, long aCol, Nf4Tensor b, long ldb, GemmLayout layout, float* c, long ldc,
        int m, int n, int k, float alpha, bool accumulate, WorkerPool? pool)
    {
        var job = GemmJob.Instance;
        job.B = null;
        job.Nf4 = b;
        Dispatch(job, a, aRow, aCol, ldb, layout, c, ldc, m, n, k, alpha, accumulate, pool);
        job.Nf4 = null;
    }

    private static void Dispatch(GemmJob job, float* a, long aRow, long aCol, long ldb, GemmLayout layout, float* c, long ldc,
        int m, int n, int k, float alpha, bool accumulate, WorkerPool? pool)
    {
        if (!IsSupported)
        {
            throw new PlatformNotSupportedException("PackedGemm needs AVX-512; use TrainingGemm, which falls back");
        }

        if (m == 0 || n == 0)
        {
            return;
        }

        if (k == 0)
        {
            if (!accumulate)
            {
                for (var i = 0; i < m; i++)
                {
                    new Span<float>(c + i * ldc, n).Clear();
                }
            }

            return;
        }

        job.A = a;
        job.ARow = aRow;
        job.ACol = aCol;
        job.Ldb = ldb;
        job.Layout = layout;
        job.C = c;
        job.Ldc = ldc;
        job.M = m;
        job.N = n;
        job.K = k;
        job.Alpha = alpha;
        job.Accumulate = accumulate;
        var panels = (n + Nr - 1) / Nr;
        var tiles = (m + Mr - 1) / Mr;
        var chunks = 1;
        if (pool is not null && pool.Threads > 1 && (long)m * n * k >= MinParallelWork)
        {
            chunks = pool.Threads * 4;
        }

        // Splitting by rows makes every chunk pack all of B (chunks·N·K, a strided gather for an N×K B, about
        // four times a contiguous copy, and NF4 decoding costs more still); splitting by panels makes every panel
        // re-read all of A (M·K per 32 columns). Rows win when M > 32 · chunks (× 4 for N×K; never for NF4).
        var packCost = job.Nf4 is not null ? 1L << 20 : layout == GemmLayout.NK ? 4L : 1L;
        job.SplitRows = (long)m > Nr * chunks * packCost || panels < chunks;
        chunks = Math.Min(chunks, job.SplitRows ? tiles : panels);
        if (job.SplitRows && chunks > 1 && (long)n * k > LargeB)
        {
            // A B much larger than L2 is streamed from memory once per chunk: one chunk per thread.
            chunks = Math.Min(chunks, pool!.Threads);
        }

        if (job.SplitRows && chunks > 1 && layout == GemmLayout.NK && job.Nf4 is null)
        {
            // Every chunk would gather the whole N×K B column by column: transpose it to K×N once instead.
            var transposed = _transposed is { } t && t.Length >= (long)n * k ? t : _transposed = GC.AllocateUninitializedArray<float>(n * k, pinned: true);
            fixed (float* pt = transposed)
            {
                Transpose(job.B, ldb, pt, n, k);
                job.B = pt;
            }

            job.Ldb = n;
            job.Layout = GemmLayout.KN;
        }

        if (chunks <= 1)
        {
            job.Execute(0, 1);
        }
        else
        {
            pool!.Run(job, chunks);
        }
    }

    // dst[p·n + j] = src[j·ldb + p], in 32 × 32 tiles so both sides stay in cache.
    private static void Transpose(float* src, long ldb, float* dst, int n, int k)
    {
        const int Tile = 32;
        for (var j0 = 0; j0 < n; j0 += Tile)
        {
            var j1 = Math.Min(n, j0 + Tile);
            for (var p0 = 0; p0 < k; p0 += Tile)
            {
                var p1 = Math.Min(k, p0 + Tile);
                for (var j = j0; j < j1; j++)
                {
                    for (var p = p0; p < p1; p++)
                    {
                        dst[(long)p * n + j] = src[j * ldb + p];
                    }
                }
            }
        }
    }

    private sealed class GemmJob : IParallelJob
    {
        [ThreadStatic]
        private static GemmJob? _instance;

        public float* A;
        public long ARow;
        public long ACol;
        public float* B;
        public Nf4Tensor? Nf4;
        public long Ldb;
        public GemmLayout Layout;
        public float* C;
        public long Ldc;
        public int M;
        public int N;
        public int K;
        public float Alpha;
        public bool Accumulate;
        public bool SplitRows;

        // One job object per calling thread: reused, so a training step allocates nothing here.
        public static GemmJob Instance => _instance ??= new GemmJob();

        public void Execute(int chunk, int chunkCount)
        {
            var panels = (N + Nr - 1) / Nr;
            var tiles = (M + Mr - 1) / Mr;
            int p0 = 0, p1 = panels, t0 = 0, t1 = tiles;
            if (SplitRows)
            {
                t0 = (int)((long)tiles * chunk / chunkCount);
                t1 = (int)((long)tiles * (chunk + 1) / chunkCount);
            }
            else
            {
                p0 = (int)((long)panels * chunk / chunkCount);
                p1 = (int)((long)panels * (chunk + 1) / chunkCount);
            }

            var kBlocks = (K + MaxKc - 1) / MaxKc;
            var kcMax = (K + kBlocks - 1) / kBlocks;
            var packedB = _packed ??= GC.AllocateUninitializedArray<float>(MaxKc * Nr, pinned: true);
            var packedA = _packedA ??= GC.AllocateUninitializedArray<float>(McTiles * Mr * MaxKc, pinned: true);
            Span<float> edge = stackalloc float[Mr * Nr];
            // Rows contiguous in k are read in place (six row streams); any other stride is packed first.
            var packA = ACol != 1;
            fixed (float* pb = packedB, pa = packedA, pe = edge)
            {
                // GotoBLAS order: a block of McTiles row tiles × kc is packed once and stays in L2 while every
                // panel of B (packed into L1) sweeps over it.
                // An NF4 B read with A in place sweeps all of the chunk's rows per panel, so each panel is
                // dequantised once.
                var mcTiles = packA || Nf4 is null ? McTiles : int.MaxValue;
                // Advanced to te, not by mcTiles: tb + int.MaxValue would wrap negative for a chunk not starting at 0.
                for (int tb = t0, te; tb < t1; tb = te)
                {
                    te = (int)Math.Min(t1, (long)tb + mcTiles);
                    for (var k0 = 0; k0 < K; k0 += kcMax)
                    {
                        var kc = Math.Min(kcMax, K - k0);
                        if (packA)
                        {
                            PackA(pa, tb, te, k0, kc);
                        }

                        var first = k0 == 0 && !Accumulate;
                        for (var p = p0; p < p1; p++)
                        {
                            var n0 = p * Nr;
                            var nb = Math.Min(Nr, N - n0);
                            Pack(pb, n0, nb, k0, kc);
                            for (var t = tb; t < te; t++)
                            {
                                var m0 = t * Mr;
                                var mb = Math.Min(Mr, M - m0);
                                var a = packA ? pa + (long)(t - tb) * kc * Mr : A + m0 * ARow + k0;
                                var cTile = C + m0 * Ldc + n0;
                                if (nb == Nr)
                                {
                                    Tile(packA, a, pb, kc, cTile, Ldc, mb, first);
                                    continue;
                                }

                                // A short last panel goes through a scratch tile.
                                for (var i = 0; i < mb; i++)
                                {
                                    for (var j = 0; j < nb; j++)
                                    {
                                        pe[i * Nr + j] = first ? 0 : cTile[i * Ldc + j];
                                    }
                                }

                                Tile(packA, a, pb, kc, pe, Nr, mb, false);
                                for (var i = 0; i < mb; i++)
                                {
                                    for (var j = 0; j < nb; j++)
                                    {
                                        cTile[i * Ldc + j] = pe[i * Nr + j];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Tile(bool packedA, float* a, float* b, int kc, float* c, long ldc, int mb, bool first)
        {
            if (packedA)
            {
                Kernel(a, b, kc, c, ldc, mb, first, Alpha);
            }
            else
            {
                KernelRows(a, ARow, b, kc, c, ldc, mb, first, Alpha);
            }
        }

        // packedA[(t − tb)·kc·6 + kk·6 + i] = A(6t + i, k0 + kk); rows past M are zero.
        private void PackA(float* packed, int tb, int te, int k0, int kc)
        {
            for (var t = tb; t < te; t++)
            {
                var dst = packed + (long)(t - tb) * kc * Mr;
                var m0 = t * Mr;
                var mb = Math.Min(Mr, M - m0);
                if (mb < Mr)
                {
                    new Span<float>(dst, kc * Mr).Clear();
                }

                if (ACol == 1)
                {
                    // Rows contiguous in k: read along each row.
                    for (var i = 0; i < mb; i++)
                    {
                        var src = A + (m0 + i) * ARow + k0;
                        for (var kk = 0; kk < kc; kk++)
                        {
                            dst[kk * Mr + i] = src[kk];
                        }
                    }
                }
                else
                {
                    // Transposed (or any other stride): read the tile's rows at each k.
                    for (var kk = 0; kk < kc; kk++)
                    {
                        var src = A + m0 * ARow + (k0 + kk) * ACol;
                        for (var i = 0; i < mb; i++)
                        {
                            dst[kk * Mr + i] = src[i * ARow];
                        }
                    }
                }
            }
        }

        // packed[kk·32 + j] = B(k0 + kk, n0 + j); columns j ≥ nb are zero.
        private void Pack(float* packed, int n0, int nb, int k0, int kc)
        {
            if (nb < Nr)
            {
                new Span<float>(packed, kc * Nr).Clear();
            }

            if (Nf4 is not null)
            {
                PackNf4(packed, n0, nb, k0, kc);
                return;
            }

            if (Layout == GemmLayout.KN)
            {
                for (var kk = 0; kk < kc; kk++)
                {
                    var src = B + (k0 + kk) * Ldb + n0;
                    var dst = packed + kk * Nr;
                    if (nb == Nr)
                    {
                        Vector512.Store(Vector512.Load(src), dst);
                        Vector512.Store(Vector512.Load(src + 16), dst + 16);
                    }
                    else
                    {
                        new ReadOnlySpan<float>(src, nb).CopyTo(new Span<float>(dst, nb));
                    }
                }

                return;
            }

            for (var j = 0; j < nb; j++)
            {
                var src = B + (n0 + j) * Ldb + k0;
                for (var kk = 0; kk < kc; kk++)
                {
                    packed[kk * Nr + j] = src[kk];
                }
            }
        }

        // NF4: each run of consecutive stored elements is dequantised straight into the packed panel.
        private void PackNf4(float* packed, int n0, int nb, int k0, int kc)
        {
            Span<float> run = stackalloc float[Math.Max(Nr, MaxKc)];
            if (Layout == GemmLayout.KN)
            {
                for (var kk = 0; kk < kc; kk++)
                {
                    Nf4!.DequantizeRange((k0 + kk) * Ldb + n0, new Span<float>(packed + kk * Nr, nb));
                }

                return;
            }

            for (var j = 0; j < nb; j++)
            {
                var r = run[..kc];
                Nf4!.DequantizeRange((n0 + j) * Ldb + k0, r);
                for (var kk = 0; kk < kc; kk++)
                {
                    packed[kk * Nr + j] = r[kk];
                }
            }
        }

        // Register tile: 6 rows × 32 columns = 12 Vector512 accumulators; each k broadcasts the 6 packed A
        // values against two packed B vectors. Rows beyond mb were packed as zero and are not stored.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Kernel(float* a, float* b, int kc, float* c, long ldc, int mb, bool first, float alpha)
        {
            Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
            Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
            for (var kk = 0; kk < kc; kk++, a += Mr, b += Nr)
            {
                var b0 = Vector512.Load(b);
                var b1 = Vector512.Load(b + 16);
                var x = Vector512.Create(a[0]);
                c00 = Vector512.FusedMultiplyAdd(x, b0, c00);
                c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
                x = Vector512.Create(a[1]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10);
                c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
                x = Vector512.Create(a[2]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20);
                c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
                x = Vector512.Create(a[3]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30);
                c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
                x = Vector512.Create(a[4]);
                c40 = Vector512.FusedMultiplyAdd(x, b0, c40);
                c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
                x = Vector512.Create(a[5]);
                c50 = Vector512.FusedMultiplyAdd(x, b0, c50);
                c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            }

            var s = Vector512.Create(alpha);
            Store(c, ldc, 0, mb, first, s, c00, c01);
            Store(c, ldc, 1, mb, first, s, c10, c11);
            Store(c, ldc, 2, mb, first, s, c20, c21);
            Store(c, ldc, 3, mb, first, s, c30, c31);
            Store(c, ldc, 4, mb, first, s, c40, c41);
            Store(c, ldc, 5, mb, first, s, c50, c51);
        }

        // The same tile reading A in place from six rows (unit stride in k); rows beyond mb read row 0.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void KernelRows(float* a, long lda, float* b, int kc, float* c, long ldc, int mb, bool first, float alpha)
        {
            var a0 = a;
            var a1 = mb > 1 ? a + lda : a;
            var a2 = mb > 2 ? a + 2 * lda : a;
            var a3 = mb > 3 ? a + 3 * lda : a;
            var a4 = mb > 4 ? a + 4 * lda : a;
            var a5 = mb > 5 ? a + 5 * lda : a;
            Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
            Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
            for (var kk = 0; kk < kc; kk++, b += Nr)
            {
                var b0 = Vector512.Load(b);
                var b1 = Vector512.Load(b + 16);
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

            var s = Vector512.Create(alpha);
            Store(c, ldc, 0, mb, first, s, c00, c01);
            Store(c, ldc, 1, mb, first, s, c10, c11);
            Store(c, ldc, 2, mb, first, s, c20, c21);
            Store(c, ldc, 3, mb, first, s, c30, c31);
            Store(c, ldc, 4, mb, first, s, c40, c41);
            Store(c, ldc, 5, mb, first, s, c50, c51);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Store(float* c, long ldc, int row, int mb, bool first, Vector512<float> alpha, Vector512<float> v0, Vector512<float> v1)
        {
            if (row >= mb)
            {
                return;
            }

            var p = c + row * ldc;
            if (first)
            {
                (v0 * alpha).Store(p);
                (v1 * alpha).Store(p + 16);
            }
            else
            {
                Vector512.FusedMultiplyAdd(v0, alpha, Vector512.Load(p)).Store(p);
                Vector512.FusedMultiplyAdd(v1, alpha, Vector512.Load(p + 16)).Store(p + 16);
            }
        }
    }
}
