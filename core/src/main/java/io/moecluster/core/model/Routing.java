package io.moecluster.core.model;

/**
 * The gate's decision for a batch of rows: each row's top-k experts and their weights.
 *
 * @param experts {@code [rows, topK]}, by descending weight
 * @param weights {@code [rows, topK]}, matching {@code experts}
 */
public record Routing(int rows, int topK, int[] experts, float[] weights) {

  public int expert(int row, int slot) {
    return experts[row * topK + slot];
  }

  public float weight(int row, int slot) {
    return weights[row * topK + slot];
  }
}
