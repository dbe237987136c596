package io.moecluster.core.model;

import java.util.Arrays;

/**
 * One sequence's attention keys and values for every layer, after RoPE. Grows by doubling up to
 * the model's context length; positions are appended in order, one step at a time.
 */
public final class KvCache {
  private final int layers;
  private final int kvDim; // kvHeads * headDim
  private final int maxPositions;
  private float[][] keys; // [layer][position * kvDim]
  private float[][] values; // [layer][position * kvDim]
  private int capacity;
  private int length;

  public KvCache(int layers, int kvDim, int maxPositions, int initialCapacity) {
    this.layers = layers;
    this.kvDim = kvDim;
    this.maxPositions = maxPositions;
    this.capacity = Math.max(1, Math.min(initialCapacity, maxPositions));
    this.keys = new float[layers][capacity * kvDim];
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
      keys[l] = Arrays.copyOf(keys[l], grown * kvDim);
      values[l] = Arrays.copyOf(values[l], grown * kvDim);
    }
    capacity = grown;
  }

  float[] keys(int layer) {
    return keys[layer];
  }

  float[] values(int layer) {
    return values[layer];
  }

  /** Marks positions below {@code newLength} as filled, after a step wrote them in every layer. */
  void advanceTo(int newLength) {
    length = newLength;
  }

  /** Bytes held, for accounting. */
  public long byteSize() {
    return 2L * layers * capacity * kvDim * Float.BYTES;
  }

  /** Drops the stored positions but keeps the memory (for reuse by another sequence). */
  public void clear() {
    length = 0;
  }
}
