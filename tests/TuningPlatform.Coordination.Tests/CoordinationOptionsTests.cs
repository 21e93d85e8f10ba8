using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Redis;

namespace TuningPlatform.Coordination.Tests;

public sealed class CoordinationOptionsTests
{
    [Fact]
    public void FromSettings_AspireKeys_ReadsConnectionStringAndOverrides()
    {
        var settings = new Dictionary<string, string>
        {
            ["ConnectionStrings:redis"] = "127.0.0.1:6390,password=s3cret",
            ["Coordination:LeaseSeconds"] = "30",
            ["Coordination:MaxAttempts"] = "5",
            ["Coordination:KeyPrefix"] = "dev:",
        };

        var options = CoordinationOptions.FromSettings(settings.GetValueOrDefault);

        Assert.Equal("127.0.0.1:6390,password=s3cret", options.ConnectionString);
        Assert.Equal(TimeSpan.FromSeconds(30), options.LeaseDuration);
        Assert.Equal(TimeSpan.FromSeconds(10), options.HeartbeatInterval);
        Assert.Equal(5, options.MaxAttempts);
        Assert.Equal("dev:", options.KeyPrefix);
        options.Validate();
    }

    [Fact]
    public void FromSettings_NoConnectionString_ThrowsNamingTheKey()
    {
        var e = Assert.Throws<InvalidOperationException>(() => CoordinationOptions.FromSettings(_ => null));

        Assert.Contains("ConnectionStrings__redis", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_HeartbeatNotShorterThanLease_Throws()
    {
        var options = new CoordinationOptions
        {
            ConnectionString = "x:1",
            LeaseDuration = TimeSpan.FromSeconds(5),
            HeartbeatInterval = TimeSpan.FromSeconds(5),
        };

        var e = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);

        Assert.Equal("HeartbeatInterval", e.ParamName);
    }

    [Theory]
    [InlineData("127.0.0.1:6390,password=pw", "127.0.0.1:6390", "pw")]
    [InlineData("redis://:pw@127.0.0.1:6390", "127.0.0.1:6390", "pw")]
    [InlineData("redis://localhost", "localhost:6379", null)]
    public void ParseConnectionString_AspireOrUriForm_GivesEndpointAndPassword(string text, string endpoint, string? password)
    {
        var configuration = RedisConnection.ParseConnectionString(text);

        Assert.Equal(endpoint, Assert.Single(configuration.EndPoints).ToString()?.Replace("Unspecified/", string.Empty, StringComparison.Ordinal));
        Assert.Equal(password, configuration.Password);
        Assert.False(configuration.AbortOnConnectFail);
    }

    [Theory]
    [InlineData("1718000000000-0", true)]
    [InlineData("1718000000000", true)]
    [InlineData("0-0", true)]
    [InlineData("", false)]
    [InlineData("-1-0", false)]
    [InlineData("abc-1", false)]
    [InlineData("1-2-3", false)]
    [InlineData("99999999999999999999999-0", false)]
    public void EventIds_IsValid_AcceptsOnlyStreamIds(string id, bool valid) => Assert.Equal(valid, EventIds.IsValid(id));

    [Fact]
    public void EventIds_Compare_OrdersBySequenceWithinAMillisecond()
    {
        Assert.True(EventIds.Compare("5-10", "5-9") > 0);
        Assert.True(EventIds.Compare("4-99", "5-0") < 0);
        Assert.Equal(0, EventIds.Compare("7", "7-0"));
    }
}
