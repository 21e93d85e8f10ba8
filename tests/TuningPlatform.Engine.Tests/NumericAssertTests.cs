namespace TuningPlatform.Engine.Tests;

/// <summary>The closeness helper must be able to fail.</summary>
public sealed class NumericAssertTests
{
    [Fact]
    public void AssertClose_OneElementOutsideTolerance_FailsNamingIt()
    {
        float[] expected = [1f, 2f, 3f];
        float[] actual = [1f, 2.1f, 3f];

        var ex = Assert.ThrowsAny<Exception>(() => NumericAssert.AssertClose(actual, expected, 1e-3, 1e-3));

        Assert.Contains("worst at [1]", ex.Message);
    }

    [Fact]
    public void AssertClose_WithinTolerance_Passes()
    {
        NumericAssert.AssertClose([1f, 2.0001f], [1f, 2f], 1e-3, 0);
    }

    [Fact]
    public void AssertClose_NaN_Fails()
    {
        Assert.ThrowsAny<Exception>(() => NumericAssert.AssertClose([float.NaN], [1f], 1, 1));
    }
}
