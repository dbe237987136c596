package io.moecluster.core.model;

import java.util.List;

/**
 * Runs the routed experts of one layer. The forward pass hands over one task per expert and
 * waits for all of them; {@link LocalExperts} computes in this process, the cluster's
 * implementation sends each task to the expert's sharded entity. Both must return, for every
 * row, exactly {@link ExpertFfn#forward} of that row, so a model gives the same tokens whichever
 * executor runs it.
 */
public interface ExpertExecutor extends AutoCloseable {

  /**
   * @return one {@code [rows, hidden]} output per task, in task order
   */
  List<float[]> run(int layer, List<ExpertTask> tasks);

  /**
   * A hint that these experts of {@code layer} are likely to be asked for soon; an executor that
   * caches weights may start loading them. Never changes a result.
   */
  default void prefetch(int layer, int[] experts) {}

  /**
   * Whether a {@link #prefetch} hint for {@code layer} could help now. False where every expert of
   * the layer is known to be warm where it runs and to stay so (the cluster's nodes say so in
   * their replies): the forward pass then does not predict that layer at all.
   */
  default boolean wantsHints(int layer) {
    return true;
  }

  /**
   * Whether {@link #run} waits on other threads or processes (the cluster's experts) rather than
   * computing on the caller's kernels: the forward pass then lets its kernel helpers rest.
   */
  default boolean remote() {
    return false;
  }

  @Override
  default void close() {}
}
