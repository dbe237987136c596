package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.moecluster.core.model.WeightPlacement;
import io.moecluster.expert.ExpertNodeSettings;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/** The reference.conf defaults and the checks on the settings. */
class SettingsTest {

  @Test
  void routerDefaults() {
    RouterSettings s = RouterSettings.fromConfig(
        ConfigFactory.parseString("moe.router.model-dir = /models/x").withFallback(ConfigFactory.load()));
    assertEquals(Path.of("/models/x"), s.modelDir());
    assertEquals(0, s.computeThreads());
    assertEquals(32, s.maxRunningSequences());
    assertEquals(256, s.maxWaiting());
    assertEquals(Duration.ofSeconds(10), s.expertTimeout());
    assertEquals(1, s.minExpertNodes());
    assertEquals(192 * 1024, s.maxExpertMessageBytes());
    assertEquals(Duration.ofSeconds(2), s.placementRetryInterval());
    assertTrue(s.prefetchEnabled());
    assertEquals(1, s.prefetchDepth());
    assertEquals(0, s.prefetchExtraExperts());
    assertTrue(s.dataChannel());
    assertTrue(s.kernelWarmUp());
    assertEquals(WeightPlacement.AUTO, s.weights());
    assertEquals(WeightPlacement.MAP, RouterSettings.fromConfig(ConfigFactory.parseString(
        "moe.router { model-dir = /models/x, weights = map }").withFallback(ConfigFactory.load())).weights());
    assertEquals(false, RouterSettings.fromConfig(ConfigFactory.parseString(
        "moe.router { model-dir = /models/x, kernel-warm-up = off }").withFallback(ConfigFactory.load())).kernelWarmUp());
    assertEquals(false, RouterSettings.fromConfig(ConfigFactory.parseString(
        "moe.router { model-dir = /models/x, data-channel = off }").withFallback(ConfigFactory.load())).dataChannel());
    RouterSettings off = RouterSettings.fromConfig(ConfigFactory.parseString(
        "moe.router { model-dir = /models/x, prefetch { enabled = false, depth = 2, extra-experts = 1 } }")
        .withFallback(ConfigFactory.load()));
    assertEquals(false, off.prefetchEnabled());
    assertEquals(2, off.prefetchDepth());
    assertEquals(1, off.prefetchExtraExperts());
  }

  @Test
  void expertDefaults() {
    var config = ConfigFactory.parseString("moe.expert.model-dir = /models/x").withFallback(ConfigFactory.load());
    ExpertNodeSettings s = ExpertNodeSettings.fromConfig(config);
    assertEquals(Path.of("/models/x"), s.modelDir());
    assertEquals(0, s.computeThreads());
    assertTrue(s.effectiveComputeThreads() >= 1);
    assertEquals(64, config.getInt("moe.expert.sharding.number-of-shards"));
    assertTrue(s.dataChannel());
    assertEquals(0, s.dataChannelPort());
    assertTrue(s.kernelWarmUp());
    assertEquals(false, ExpertNodeSettings.fromConfig(ConfigFactory.parseString("moe.expert.kernel-warm-up = off")
        .withFallback(config)).kernelWarmUp());
    ExpertNodeSettings fixed = ExpertNodeSettings.fromConfig(ConfigFactory.parseString(
        "moe.expert.data-channel { enabled = off, port = 25600 }").withFallback(config));
    assertEquals(false, fixed.dataChannel());
    assertEquals(25600, fixed.dataChannelPort());
  }

  @Test
  void badValuesNameTheKey() {
    var e = assertThrows(IllegalArgumentException.class, () -> RouterSettings.fromConfig(ConfigFactory.load()));
    assertTrue(e.getMessage().contains("moe.router.model-dir"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> RouterSettings.fromConfig(
        ConfigFactory.parseString("moe.router { model-dir = x, max-running-sequences = 0 }")
            .withFallback(ConfigFactory.load())));
    assertTrue(e.getMessage().contains("max-running-sequences"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> RouterSettings.fromConfig(
        ConfigFactory.parseString("moe.router { model-dir = x, prefetch.depth = 0 }").withFallback(ConfigFactory.load())));
    assertTrue(e.getMessage().contains("moe.router.prefetch.depth"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> RouterSettings.fromConfig(ConfigFactory.parseString(
        "moe.router { model-dir = x, prefetch.extra-experts = -1 }").withFallback(ConfigFactory.load())));
    assertTrue(e.getMessage().contains("moe.router.prefetch.extra-experts"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> RouterSettings.fromConfig(ConfigFactory.parseString(
        "moe.router { model-dir = x, weights = mmap }").withFallback(ConfigFactory.load())));
    assertEquals("moe.router.weights must be one of auto, copy, map; got 'mmap'", e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> ExpertNodeSettings.fromConfig(ConfigFactory.load()));
    assertTrue(e.getMessage().contains("moe.expert.model-dir"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> ExpertNodeSettings.fromConfig(ConfigFactory.parseString(
        "moe.expert { model-dir = x, data-channel.port = 70000 }").withFallback(ConfigFactory.load())));
    assertTrue(e.getMessage().contains("moe.expert.data-channel.port"), e.getMessage());
  }
}
