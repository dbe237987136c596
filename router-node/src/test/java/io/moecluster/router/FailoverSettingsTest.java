package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/** moe.router.failover: read from reference.conf, checked, and the backoff it implies. */
class FailoverSettingsTest {
  @Test
  void referenceConfMatchesTheDefaults() {
    FailoverSettings s = FailoverSettings.fromConfig(ConfigFactory.load().getConfig("moe.router"));
    assertEquals(FailoverSettings.defaults(), s);
  }

  @Test
  void backoffDoublesUpToTheCapWithJitterBelowIt() {
    FailoverSettings s = FailoverSettings.defaults(); // 50 ms .. 1 s, jitter 0.2
    assertEquals(Duration.ofMillis(50).toNanos(), s.backoffNanos(1, 1.0));
    assertEquals(Duration.ofMillis(100).toNanos(), s.backoffNanos(2, 1.0));
    assertEquals(Duration.ofMillis(800).toNanos(), s.backoffNanos(5, 1.0));
    assertEquals(Duration.ofSeconds(1).toNanos(), s.backoffNanos(6, 1.0));
    assertEquals(Duration.ofSeconds(1).toNanos(), s.backoffNanos(60, 1.0));
    assertEquals(Duration.ofMillis(40).toNanos(), s.backoffNanos(1, 0.0), "20% jitter");
    long mid = s.backoffNanos(3, 0.5);
    assertTrue(mid > Duration.ofMillis(160).toNanos() && mid < Duration.ofMillis(200).toNanos(), "" + mid);
  }

  @Test
  void badValuesNameTheKey() {
    var e = assertThrows(IllegalArgumentException.class, () -> FailoverSettings.fromConfig(
        ConfigFactory.parseString("failover.breaker.failures = 0").withFallback(
            ConfigFactory.load().getConfig("moe.router"))));
    assertTrue(e.getMessage().contains("moe.router.failover.breaker.failures"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> FailoverSettings.fromConfig(
        ConfigFactory.parseString("failover.hedge.max-delay = 1ms").withFallback(
            ConfigFactory.load().getConfig("moe.router"))));
    assertTrue(e.getMessage().contains("hedge.max-delay"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> FailoverSettings.fromConfig(
        ConfigFactory.parseString("failover.suspect-after = 0ms").withFallback(
            ConfigFactory.load().getConfig("moe.router"))));
    assertTrue(e.getMessage().contains("moe.router.failover.suspect-after"), e.getMessage());
  }
}
