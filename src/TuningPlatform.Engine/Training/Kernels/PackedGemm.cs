// Strided packed GEMM for training: C[M, N] (+)= α · op(A) · op(B) with any layout of A and B, so that
// no product of the training step transposes a whole operand first.
//
//   A   element (i, p) at a[i·aRow + p·aCol]     [M, K] (aRow = K, aCol = 1) or Aᵀ of [K, M] (aRow = 1, aCol = M)
//   B   element (p, j) at b[j·ldb + p]  (NK: B stored [N, K], a weight as nn.Linear holds it)
//                      or b[p·ldb + j]  (KN: B stored [K, N])
//       or an NF4 matrix in either layout, dequantised panel by panel as it is packed (never whole)
//   C   element (i, j) at c[i·ldc + j]
//
// Loop structure (BLIS/GotoBLAS): B is cut into blocks that fit 8 MB (blocks of 32-column panels × all of K,
// or super-blocks of K when even 16 panels of all K would not fit); the pool packs each block once into
// k-major panels (zero columns past N), shared by every chunk. Then each chunk of rows (or of panels, when
// there are too few row tiles) walks blocks of up to 240 rows × Kc of A: packed into 6-row micro-panels when A
// is not contiguous in k (a transposed A: dW = dyᵀ·x), read in place as six row streams otherwise, and a
// 6 × 32 register tile of Vector512 accumulators (6 × 16 for a 16-wide last panel) runs over the block's row
// tiles with six broadcasts of A and two packed B loads per k; α scales each k-block's partial sum as it is
// added to C. Every element of C is summed by one chunk in a fixed k order, so results do not depend on the
// number of threads. With no pool the call runs on the calling thread: the attention kernel uses that from
// inside its own pool chunks.
// Requires AVX-512 (IsSupported); callers keep their portable path otherwise.
// Reference: Goto & van de Geijn 2008, "Anatomy of high-performance matrix multiplication"; BLIS's
// packing of A and B into micro-panels.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
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

    // Row tiles per block of A: 40 × 6 rows × up to 320 k = 300 KB, resident in L2.
    private const int McTiles = 40;

    // Packed B per block (floats): 8 MB, shared by every chunk of the product.
    private const long PackedBudget = 1 << 21;

    // Floats per 64-byte cache line.
    private const int LineFloats = 16;

    // A block of B is at least this many panels wide (or all of them) before K is split into super-blocks.
    private const int MinBlockPanels = 16;

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

    // GotoBLAS order with B packed once per product: B is cut into blocks of panels × a range of k that fit
    // PackedBudget (all of K when a block can still be MinBlockPanels wide, else super-blocks of k), each block
    // is packed by the pool (chunks over panels), then every chunk of rows multiplies its rows by the whole
    // packed block. Packing B per chunk instead (as this kernel first did) repeated it once per chunk and per
    // 240-row block of A: for an N×K weight, a strided gather several times the cost of a copy.
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
        var kBlocks = (k + MaxKc - 1) / MaxKc;
        job.Kc = (k + kBlocks - 1) / kBlocks;
        var threads = pool is not null && pool.Threads > 1 && (long)m * n * k >= MinParallelWork ? pool.Threads : 1;

        int blockPanels, blockK;
        var allK = (long)k * Nr;
        if (allK * Math.Min(panels, MinBlockPanels) <= PackedBudget)
        {
            blockPanels = (int)Math.Min(panels, PackedBudget / allK);
            blockK = k;
        }
        else
        {
            blockPanels = Math.Min(panels, MinBlockPanels);
            blockK = (int)Math.Max(1, PackedBudget / ((long)blockPanels * Nr * job.Kc)) * job.Kc;
        }

        job.EnsurePacked((long)blockPanels * Math.Min(blockK, k) * Nr);
        // Rows are the natural split (each chunk reads the shared packed B); a product with too few row tiles
        // for every thread splits its panels instead.
        job.SplitRows = tiles >= 2 * threads;
        for (var p0 = 0; p0 < panels; p0 += blockPanels)
        {
            job.P0 = p0;
            job.P1 = Math.Min(panels, p0 + blockPanels);
            for (var k0 = 0; k0 < k; k0 += blockK)
            {
                job.K0 = k0;
                job.K1 = Math.Min(k, k0 + blockK);
                job.Packing = true;
                RunChunks(job, pool, threads == 1 ? 1 : Math.Min(job.P1 - p0, 2 * threads));
                job.Packing = false;
                RunChunks(job, pool, threads == 1 ? 1 : job.SplitRows ? Math.Min(tiles, 4 * threads) : Math.Min(job.P1 - p0, 4 * threads));
            }
        }
    }

    private static void RunChunks(GemmJob job, WorkerPool? pool, int chunks)
    {
        if (chunks <= 1)
        {
            job.Execute(0, 1);
        }
        else
        {
            pool!.Run(job, chunks);
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
        public int Kc;
        public float Alpha;
        public bool Accumulate;
        public bool SplitRows;

        // The block being packed or multiplied: panels [P0, P1) × k [K0, K1).
        public int P0;
        public int P1;
        public int K0;
        public int K1;
        public bool Packing;

        // Packed B of the block: panel p, row k at ((p − P0)·(K1 − K0) + k − K0)·32, k-major within a panel; 64-byte aligned.
        private float[] _packedB = [];
        private float* _packedBPtr;

        [ThreadStatic]
        private static float[]? _packedA;

        // One job object per calling thread: reused, so a training step allocates nothing here.
        public static GemmJob Instance => _instance ??= new GemmJob();

        public void EnsurePacked(long floats)
        {
            // Panels start on a 64-byte line, so no Vector512 load of B straddles two lines (a pinned array's data
            // need not start on one): in-process A/B runs, the step's products took 4-9% less time aligned.
            if (_packedB.Length < floats + LineFloats)
            {
                _packedB = GC.AllocateUninitializedArray<float>(checked((int)(floats + LineFloats)), pinned: true);
                _packedBPtr = (float*)(((nint)Unsafe.AsPointer(ref _packedB[0]) + 63) & ~(nint)63);
            }
        }

        public void Execute(int chunk, int chunkCount)
        {
            if (Packing)
            {
                PackBlock(chunk, chunkCount);
            }
            else
            {
                Multiply(chunk, chunkCount);
            }
        }

        private void PackBlock(int chunk, int chunkCount)
        {
            var count = P1 - P0;
            var blockK = K1 - K0;
            var from = P0 + (int)((long)count * chunk / chunkCount);
            var to = P0 + (int)((long)count * (chunk + 1) / chunkCount);
            for (var p = from; p < to; p++)
            {
                var n0 = p * Nr;
                var nb = Math.Min(Nr, N - n0);
                for (var k0 = K0; k0 < K1; k0 += Kc)
                {
                    Pack(_packedBPtr + ((long)(p - P0) * blockK + k0 - K0) * Nr, n0, nb, k0, Math.Min(Kc, K1 - k0));
                }
            }
        }

        private void Multiply(int chunk, int chunkCount)
        {
            var tiles = (M + Mr - 1) / Mr;
            int p0 = P0, p1 = P1, t0 = 0, t1 = tiles;
            if (SplitRows)
            {
                t0 = (int)((long)tiles * chunk / chunkCount);
                t1 = (int)((long)tiles * (chunk + 1) / chunkCount);
            }
            else
            {
                p0 = P0 + (int)((long)(P1 - P0) * chunk / chunkCount);
                p1 = P0 + (int)((long)(P1 - P0) * (chunk + 1) / chunkCount);
            }

            var blockK = K1 - K0;
            var packedA = _packedA ??= GC.AllocateUninitializedArray<float>(McTiles * Mr * MaxKc, pinned: true);
            Span<float> edge = stackalloc float[Mr * Nr];
            // Rows contiguous in k are read in place (six row streams); any other stride is packed first.
            var packA = ACol != 1;
            fixed (float* pa = packedA, pe = edge)
            {
                // A block of McTiles row tiles × kc stays in L2 while every packed panel of B sweeps over it.
                for (int tb = t0, te; tb < t1; tb = te)
                {
                    te = Math.Min(t1, tb + McTiles);
                    for (var k0 = K0; k0 < K1; k0 += Kc)
                    {
                        var kc = Math.Min(Kc, K1 - k0);
                        if (packA)
                        {
                            PackA(pa, tb, te, k0, kc);
                        }

                        var first = k0 == 0 && !Accumulate;
                        for (var p = p0; p < p1; p++)
                        {
                            var n0 = p * Nr;
                            var nb = Math.Min(Nr, N - n0);
                            var pb = _packedBPtr + ((long)(p - P0) * blockK + k0 - K0) * Nr;
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

                                if (nb == Nr / 2)
                                {
                                    // A 16-wide last panel (head dimension 48, as in stories15M's attention): half a tile.
                                    HalfTile(packA, a, pb, kc, cTile, Ldc, mb, first);
                                    continue;
                                }

                                // Any other short last panel goes through a scratch tile.
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

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void HalfTile(bool packedA, float* a, float* b, int kc, float* c, long ldc, int mb, bool first)
        {
            if (packedA)
            {
                HalfKernel(a, Mr, 1, b, kc, c, ldc, mb, first, Alpha);
            }
            else
            {
                HalfKernel(a, 1, ARow, b, kc, c, ldc, mb, first, Alpha);
            }
        }

        // The register tile for 16 columns: 6 rows × one Vector512; A(i, kk) at a[kk·aStep + i·aRow] (packed:
        // step 6, row 1; in place: step 1, row lda; rows beyond mb read row 0 and are not stored).
        [MethodImpl(MethodImplOptions.NoInlining)]
        private static void HalfKernel(float* a, long aStep, long aRow, float* b, int kc, float* c, long ldc, int mb, bool first, float alpha)
        {
            var a0 = a;
            var a1 = mb > 1 ? a + aRow : a;
            var a2 = mb > 2 ? a + 2 * aRow : a;
            var a3 = mb > 3 ? a + 3 * aRow : a;
            var a4 = mb > 4 ? a + 4 * aRow : a;
            var a5 = mb > 5 ? a + 5 * aRow : a;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
            for (long kk = 0, o = 0; kk < kc; kk++, o += aStep, b += Nr)
            {
                var b0 = Vector512.Load(b);
                c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[o]), b0, c0);
                c1 = Vector512.FusedMultiplyAdd(Vector512.Create(a1[o]), b0, c1);
                c2 = Vector512.FusedMultiplyAdd(Vector512.Create(a2[o]), b0, c2);
                c3 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[o]), b0, c3);
                c4 = Vector512.FusedMultiplyAdd(Vector512.Create(a4[o]), b0, c4);
                c5 = Vector512.FusedMultiplyAdd(Vector512.Create(a5[o]), b0, c5);
            }

            var s = Vector512.Create(alpha);
            StoreHalf(c, ldc, 0, mb, first, s, c0);
            StoreHalf(c, ldc, 1, mb, first, s, c1);
            StoreHalf(c, ldc, 2, mb, first, s, c2);
            StoreHalf(c, ldc, 3, mb, first, s, c3);
            StoreHalf(c, ldc, 4, mb, first, s, c4);
            StoreHalf(c, ldc, 5, mb, first, s, c5);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void StoreHalf(float* c, long ldc, int row, int mb, bool first, Vector512<float> alpha, Vector512<float> v)
        {
            if (row >= mb)
            {
                return;
            }

            var p = c + row * ldc;
            (first ? v * alpha : Vector512.FusedMultiplyAdd(v, alpha, Vector512.Load(p))).Store(p);
        }

        // packedA[(t − tb)·kc·6 + kk·6 + i] = A(6t + i, k0 + kk); rows past M are zero.
        private void PackA(float* packed, int tb, int te, int k0, int kc)
        {
            var from = tb;
            if (ARow == 1 && ACol != 1)
            {
                // Transposed A: at each k the block's rows are contiguous. k outer, so each k's row of the source is
                // read in order; each tile takes eight values at once, whose two extra land on the tile's next k
                // slots (written at the next k). The last k moves exactly six, so nothing lands on the next tile.
                // Tiles whose eight-wide read would pass the end of the row (m0 + 8 > M) go the scalar way below.
                from = M < 8 ? tb : Math.Clamp((M - 8) / Mr + 1, tb, te);
                for (var kk = 0; kk < kc; kk++)
                {
                    var src = A + (k0 + kk) * ACol;
                    var dst = packed + kk * Mr;
                    if (kk < kc - 1)
                    {
                        for (var t = tb; t < from; t++)
                        {
                            Vector256.Store(Vector256.Load(src + t * Mr), dst + (long)(t - tb) * kc * Mr);
                        }
                    }
                    else
                    {
                        for (var t = tb; t < from; t++)
                        {
                            Vector128.Store(Vector128.Load(src + t * Mr), dst + (long)(t - tb) * kc * Mr);
                            dst[(long)(t - tb) * kc * Mr + 4] = src[t * Mr + 4];
                            dst[(long)(t - tb) * kc * Mr + 5] = src[t * Mr + 5];
                        }
                    }
                }
            }

            for (var t = from; t < te; t++)
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

            // NK: the panel is the transpose of nb rows × kc. Groups of eight rows go through 8 × 8 register
            // transposes (eight loads, 24 shuffles, eight stores per 64 values); the rest moves one value at a time.
            var j0 = 0;
            var k8 = kc & ~7;
            for (; j0 + 8 <= nb; j0 += 8)
            {
                var src = B + (n0 + j0) * Ldb + k0;
                for (var kk = 0; kk < k8; kk += 8)
                {
                    Transpose8x8(src + kk, Ldb, packed + kk * Nr + j0, Nr);
                }

                for (var j = j0; j < j0 + 8; j++)
                {
                    for (var kk = k8; kk < kc; kk++)
                    {
                        packed[kk * Nr + j] = B[(n0 + j) * Ldb + k0 + kk];
                    }
                }
            }

            for (var j = j0; j < nb; j++)
            {
                var src = B + (n0 + j) * Ldb + k0;
                for (var kk = 0; kk < kc; kk++)
                {
                    packed[kk * Nr + j] = src[kk];
                }
            }
        }

        // dst[c·ldd + r] = src[r·lds + c] for an 8 × 8 block (unpack pairs, then quads, then 128-bit halves).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Transpose8x8(float* src, long lds, float* dst, long ldd)
        {
            var r0 = Avx.LoadVector256(src);
            var r1 = Avx.LoadVector256(src + lds);
            var r2 = Avx.LoadVector256(src + 2 * lds);
            var r3 = Avx.LoadVector256(src + 3 * lds);
            var r4 = Avx.LoadVector256(src + 4 * lds);
            var r5 = Avx.LoadVector256(src + 5 * lds);
            var r6 = Avx.LoadVector256(src + 6 * lds);
            var r7 = Avx.LoadVector256(src + 7 * lds);
            var t0 = Avx.UnpackLow(r0, r1);
            var t1 = Avx.UnpackHigh(r0, r1);
            var t2 = Avx.UnpackLow(r2, r3);
            var t3 = Avx.UnpackHigh(r2, r3);
            var t4 = Avx.UnpackLow(r4, r5);
            var t5 = Avx.UnpackHigh(r4, r5);
            var t6 = Avx.UnpackLow(r6, r7);
            var t7 = Avx.UnpackHigh(r6, r7);
            var u0 = Avx.Shuffle(t0, t2, 0x44);
            var u1 = Avx.Shuffle(t0, t2, 0xEE);
            var u2 = Avx.Shuffle(t1, t3, 0x44);
            var u3 = Avx.Shuffle(t1, t3, 0xEE);
            var u4 = Avx.Shuffle(t4, t6, 0x44);
            var u5 = Avx.Shuffle(t4, t6, 0xEE);
            var u6 = Avx.Shuffle(t5, t7, 0x44);
            var u7 = Avx.Shuffle(t5, t7, 0xEE);
            Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
            Avx.Store(dst + ldd, Avx.Permute2x128(u1, u5, 0x20));
            Avx.Store(dst + 2 * ldd, Avx.Permute2x128(u2, u6, 0x20));
            Avx.Store(dst + 3 * ldd, Avx.Permute2x128(u3, u7, 0x20));
            Avx.Store(dst + 4 * ldd, Avx.Permute2x128(u0, u4, 0x31));
            Avx.Store(dst + 5 * ldd, Avx.Permute2x128(u1, u5, 0x31));
            Avx.Store(dst + 6 * ldd, Avx.Permute2x128(u2, u6, 0x31));
            Avx.Store(dst + 7 * ldd, Avx.Permute2x128(u3, u7, 0x31));
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
        [MethodImpl(MethodImplOptions.NoInlining)]
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
        [MethodImpl(MethodImplOptions.NoInlining)]
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
