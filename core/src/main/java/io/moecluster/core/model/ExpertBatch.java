package io.moecluster.core.model;

import java.util.ArrayList;
import java.util.List;

/**
 * Expert batching: groups the rows of a step by the experts the gate chose, one {@link
 * ExpertTask} per expert that received any row (in ascending expert order), and combines the
 * experts' outputs back into rows: {@code out[r] = sum over r's experts, in ascending expert
 * index, of weight * expert(x[r])}. The fixed order makes the sum independent of how rows are
 * batched or where the experts ran.
 */
public final class ExpertBatch {
  private final Routing routing;
  private final int hidden;
  private final List<ExpertTask> tasks;
  private final int[] taskOfExpert; // [experts] -> task index or -1
  private final int[] localRow; // [rows, topK] -> row index inside its expert's task

  private ExpertBatch(Routing routing, int hidden, List<ExpertTask> tasks, int[] taskOfExpert, int[] localRow) {
    this.routing = routing;
    this.hidden = hidden;
    this.tasks = tasks;
    this.taskOfExpert = taskOfExpert;
    this.localRow = localRow;
  }

  /**
   * @param x the normalized hidden rows, {@code [rows, hidden]}
   */
  public static ExpertBatch group(Routing routing, float[] x, int hidden, int numExperts) {
    int rows = routing.rows();
    int k = routing.topK();
    int[] counts = new int[numExperts];
    int[] localRow = new int[rows * k];
    for (int r = 0; r < rows; r++) {
      for (int s = 0; s < k; s++) {
        localRow[r * k + s] = counts[routing.expert(r, s)]++;
      }
    }
    int[] taskOfExpert = new int[numExperts];
    float[][] inputs = new float[numExperts][];
    List<Integer> order = new ArrayList<>();
    for (int e = 0; e < numExperts; e++) {
      taskOfExpert[e] = -1;
      if (counts[e] > 0) {
        taskOfExpert[e] = order.size();
        order.add(e);
        inputs[e] = new float[counts[e] * hidden];
      }
    }
    for (int r = 0; r < rows; r++) {
      for (int s = 0; s < k; s++) {
        int e = routing.expert(r, s);
        System.arraycopy(x, r * hidden, inputs[e], localRow[r * k + s] * hidden, hidden);
      }
    }
    List<ExpertTask> tasks = new ArrayList<>(order.size());
    for (int e : order) {
      tasks.add(new ExpertTask(e, counts[e], inputs[e]));
    }
    return new ExpertBatch(routing, hidden, List.copyOf(tasks), taskOfExpert, localRow);
  }

  public List<ExpertTask> tasks() {
    return tasks;
  }

  /** Experts that received rows, ascending. */
  public int[] experts() {
    return tasks.stream().mapToInt(ExpertTask::expert).toArray();
  }

  /**
   * The weighted sum of the expert outputs per row.
   *
   * @param outputs one output per task, in task order
   * @return {@code [rows, hidden]}
   */
  public float[] combine(List<float[]> outputs) {
    if (outputs.size() != tasks.size()) {
      throw new IllegalStateException(outputs.size() + " expert outputs for " + tasks.size() + " tasks");
    }
    int k = routing.topK();
    int[] slots = new int[k];
    float[] moe = new float[routing.rows() * hidden];
    for (int r = 0; r < routing.rows(); r++) {
      sortSlotsByExpert(r, slots);
      int base = r * hidden;
      for (int s : slots) {
        int e = routing.expert(r, s);
        float w = routing.weight(r, s);
        float[] y = outputs.get(taskOfExpert[e]);
        int off = localRow[r * k + s] * hidden;
        for (int i = 0; i < hidden; i++) {
          moe[base + i] += w * y[off + i];
        }
      }
    }
    return moe;
  }

  private void sortSlotsByExpert(int row, int[] slots) {
    for (int s = 0; s < slots.length; s++) {
      slots[s] = s;
    }
    for (int i = 1; i < slots.length; i++) { // insertion sort: k is tiny
      int v = slots[i];
      int j = i - 1;
      while (j >= 0 && routing.expert(row, slots[j]) > routing.expert(row, v)) {
        slots[j + 1] = slots[j];
        j--;
      }
      slots[j + 1] = v;
    }
  }
}
