package io.moecluster.core.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.moecluster.core.kernel.Kernels;
import org.junit.jupiter.api.Test;

class KvCacheTest {

  @Test
  void keysKeepTheirBlockedPlacesAcrossGrowth() {
    int layers = 2;
    int kvDim = 6;
    KvCache cache = new KvCache(layers, kvDim, 100, 3); // grows 3 -> 6 -> 12 -> ... on the way
    int positions = 41; // two full blocks and part of a third
    for (int p = 0; p < positions; p++) {
      cache.ensureCapacity(p + 1);
      for (int l = 0; l < layers; l++) {
        float[] k = new float[kvDim + 2];
        float[] v = new float[kvDim + 2];
        for (int i = 0; i < kvDim; i++) {
          k[2 + i] = key(l, p, i);
          v[1 + i] = -key(l, p, i);
        }
        cache.store(l, p, k, 2, v, 1);
      }
      cache.advanceTo(p + 1);
    }
    for (int l = 0; l < layers; l++) {
      float[] keys = cache.keys(l);
      float[] values = cache.values(l);
      for (int p = 0; p < positions; p++) {
        for (int i = 0; i < kvDim; i++) {
          int blocked = (p / Kernels.KV_BLOCK) * kvDim * Kernels.KV_BLOCK + i * Kernels.KV_BLOCK + p % Kernels.KV_BLOCK;
          assertEquals(key(l, p, i), keys[blocked], "layer " + l + " position " + p + " element " + i);
          assertEquals(-key(l, p, i), values[p * kvDim + i], "layer " + l + " position " + p + " element " + i);
        }
      }
      // The kernel may read the whole last block of the capacity.
      assertEquals(0, keys.length % (kvDim * Kernels.KV_BLOCK));
    }
    assertEquals(positions, cache.length());
  }

  @Test
  void refusesPositionsPastTheContext() {
    KvCache cache = new KvCache(1, 4, 20, 4);
    cache.ensureCapacity(20);
    assertThrows(IllegalArgumentException.class, () -> cache.ensureCapacity(21));
  }

  private static float key(int layer, int position, int element) {
    return layer * 10_000 + position * 10 + element + 0.5f;
  }
}
