package io.moecluster.core.model.prefetch;

/**
 * How well the gate lookahead predicted one layer's routing in one forward step.
 *
 * @param layer the layer that was routed for real
 * @param depth how many layers ahead the prediction was made ({@code layer - depth} predicted it)
 * @param routed the real top-k choices of the step: {@code rows * topK}
 * @param predicted how many of those real choices were among the row's predicted top-k
 * @param routedExperts distinct experts the layer really routed rows to
 * @param prefetchedExperts distinct experts the hints named for the layer
 * @param usefulExperts distinct experts both hinted and really routed to
 */
public record PredictionAccuracy(
    int layer, int depth, int routed, int predicted, int routedExperts, int prefetchedExperts, int usefulExperts) {

  /** Share of the real top-k choices that were predicted, in [0, 1] (1 for an empty step). */
  public double share() {
    return routed == 0 ? 1.0 : (double) predicted / routed;
  }
}
