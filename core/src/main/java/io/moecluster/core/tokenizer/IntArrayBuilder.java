package io.moecluster.core.tokenizer;

import java.util.Arrays;

/** A growable int array, so encoding does not box every token id. */
final class IntArrayBuilder {
  private int[] values;
  private int size;

  IntArrayBuilder(int initialCapacity) {
    values = new int[Math.max(4, initialCapacity)];
  }

  void add(int value) {
    if (size == values.length) {
      values = Arrays.copyOf(values, size * 2);
    }
    values[size++] = value;
  }

  void addAll(int[] more) {
    for (int value : more) {
      add(value);
    }
  }

  int size() {
    return size;
  }

  int[] toArray() {
    return Arrays.copyOf(values, size);
  }
}
