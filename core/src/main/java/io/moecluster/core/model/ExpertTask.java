package io.moecluster.core.model;

/**
 * The rows one layer routes to one expert (expert batching: one task per expert per step).
 *
 * @param input {@code [rows, hidden]}, row-major
 */
public record ExpertTask(int expert, int rows, float[] input) {
  public ExpertTask {
    if (rows <= 0 || input.length % rows != 0) {
      throw new IllegalArgumentException(input.length + " floats for " + rows + " rows");
    }
  }
}
