package io.moecluster.core.model.prefetch;

/**
 * Where a {@link Prefetcher} reports what it does, so that a node can turn it into metrics (core
 * has no metrics library). Called on the forward pass's thread; must be cheap and must not throw.
 */
public interface PrefetchListener {

  /** Ignores everything. */
  PrefetchListener NONE = new PrefetchListener() {};

  /**
   * Hints were sent: at {@code sourceLayer}, for {@code experts} (distinct, ascending) of
   * {@code targetLayer} = sourceLayer + depth.
   */
  default void onHints(int sourceLayer, int targetLayer, int[] experts) {}

  /**
   * {@code targetLayer} was not predicted at {@code sourceLayer}: the expert executor said no hint
   * for it could help ({@link io.moecluster.core.model.ExpertExecutor#wantsHints}).
   */
  default void onSkipped(int sourceLayer, int targetLayer) {}

  /** A layer that had been predicted was routed for real: how good the prediction was. */
  default void onAccuracy(PredictionAccuracy accuracy) {}
}
