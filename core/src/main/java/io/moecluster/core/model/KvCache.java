package io.moecluster.core.model;

import io.moecluster.core.kernel.Kernels;
import java.util.Arrays;

/**
 * One sequence's attention keys and values for every layer, after RoPE. Grows by doubling up to
 * the model's context length; positions are appended in order, one step at a time. Keys are kept
 * in the blocked layout that {@link Kernels#attendGroup} reads, values row by row.
 */
public final class KvCache {
  private final int layers;
  private final int kvDim; // kvHeads * headDim
  private final int maxPositions;
  private float[][] keys; // [layer][block][kvDim][KV_BLOCK positions]
  private float[][] values; // [layer][position * kvDim]
  private int capacity;
  private int length;

  public KvCache(int layers, int kvDim, int maxPositions, int initialCapacity) {
    this.layers = layers;
    this.kvDim = kvDim;
    this.maxPositions = maxPositions;
    this.capacity = Math.max(1, Math.min(initialCapacity, maxPositions));
    this.keys = new float[layers][keyFloats(capacity)];
    this.values = new float[layers][capacity * kvDim];
  }

  /** Positions already stored (the next token's position). */
  public int length() {
    return length;
  }

  public int maxPositions() {
    return maxPositions;
  }

  /** Makes room for positions up to {@code endExclusive}. */
  void ensureCapacity(int endExclusive) {
    if (endExclusive > maxPositions) {
      throw new IllegalArgumentException(
          "sequence of " + endExclusive + " tokens exceeds the context length " + maxPositions);
    }
    if (endExclusive <= capacity) {
      return;
    }
    int grown = Math.min(maxPositions, Math.max(endExclusive, capacity * 2));
    for (int l = 0; l < layers; l++) {
      keys[l] = Arrays.copyOf(keys[l], keyFloats(grown)); // whole blocks: the layout is kept
      values[l] = Arrays.copyOf(values[l], grown * kvDim);
    }
    capacity = grown;
  }

  /** Whole blocks of positions, so a kernel may read a last block that is not yet full. */
  private int keyFloats(int positions) {
    return Kernels.kvPadded(positions) * kvDim;
  }

  /** Stores one position's key and value (both {@code kvDim} floats) in a layer. */
  void store(int layer, int position, float[] k, int kOff, float[] v, int vOff) {
    float[] blocked = keys[layer];
    for (int i = 0; i < kvDim; i++) {
      blocked[Kernels.keyIndex(position, i, kvDim)] = k[kOff + i];
    }
    System.arraycopy(v, vOff, values[layer], position * kvDim, kvDim);
  }

  /** A layer's keys, blocked as {@link Kernels#attendGroup} describes. */
  float[] keys(int layer) {
    return keys[layer];
  }

  /** A layer's values, {@code [position][kvDim]}. */
  float[] values(int layer) {
    return values[layer];
  }

  /** Marks positions below {@code newLength} as filled, after a step wrote them in every layer. */
  void advanceTo(int newLength) {
    length = newLength;
  }

  /** Bytes held, for accounting. */
  public long byteSize() {
    return (long) layers * (Kernels.kvPadded(capacity) + capacity) * kvDim * Float.BYTES;
  }

  /** Drops the stored positions but keeps the memory (for reuse by another sequence). */
  public void clear() {
    length = 0;
  }
}
