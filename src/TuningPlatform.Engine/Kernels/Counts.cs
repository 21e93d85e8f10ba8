// Small counts as types, for kernels whose register tiles come in a few sizes: a method generic over a struct
// TCount : ICount is compiled once per count, with the code of the rows or vectors past the count removed (the JIT
// treats TCount.Value as a constant). DecodeMatMul uses them for A rows per tile, SegmentAttention for output vectors.
namespace TuningPlatform.Engine.Kernels;

/// <summary>A count known to the JIT when a generic method is compiled for the implementing struct.</summary>
internal interface ICount
{
    static abstract int Value { get; }
}

internal readonly struct Count1 : ICount
{
    public static int Value => 1;
}

internal readonly struct Count2 : ICount
{
    public static int Value => 2;
}

internal readonly struct Count3 : ICount
{
    public static int Value => 3;
}

internal readonly struct Count4 : ICount
{
    public static int Value => 4;
}
