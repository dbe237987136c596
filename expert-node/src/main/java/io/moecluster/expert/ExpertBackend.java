package io.moecluster.expert;

import io.moecluster.core.model.ExpertWeights;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * Where an expert node runs its expert FFNs ({@code w2(silu(w1·x) ⊙ w3·x)}): on the CPU kernels
 * ({@link CpuExpertBackend}) or on NVIDIA GPUs ({@code io.moecluster.expert.cuda}). Chosen once at
 * start-up by {@link ExpertBackends#select} from {@code moe.expert.backend}.
 */
public interface ExpertBackend extends AutoCloseable {

  /** What the backend runs on, for logs and metrics ({@code "cpu"}, {@code "cuda:0 NVIDIA H100"}). */
  String description();

  /**
   * The FFN of expert (layer, expert) over {@code rows} rows. The weights are host views (warm
   * copies or the mapped checkpoint); a GPU backend keeps its own device copy keyed by (layer,
   * expert). The CPU backend computes on the caller's thread and returns a completed future; a GPU
   * backend completes it on a thread it owns. The weights must stay valid until the future is done.
   *
   * @param x {@code [rows, hidden]}
   * @return {@code [rows, hidden]}
   */
  CompletableFuture<float[]> forward(int layer, int expert, ExpertWeights weights, float[] x, int rows);

  /**
   * The FFNs of several experts, each over its own rows: the calls of a layer that reached the node
   * together. Output {@code j} is exactly what {@link #forward} gives for call {@code j}. This
   * default runs {@link #forward} for each; the CPU backend computes them all in one pass of its
   * kernels, over all their threads.
   *
   * @param layers {@code layers[j]} and {@code experts[j]} name call {@code j}'s expert
   * @param xs {@code xs[j]} is {@code [rows[j], hidden]}
   * @return one future per call, in order
   */
  default List<CompletableFuture<float[]>> forwardAll(int[] layers, int[] experts, ExpertWeights[] weights,
      float[][] xs, int[] rows) {
    List<CompletableFuture<float[]>> out = new ArrayList<>(layers.length);
    for (int j = 0; j < layers.length; j++) {
      try {
        out.add(forward(layers[j], experts[j], weights[j], xs[j], rows[j]));
      } catch (RuntimeException e) {
        // This call's failure only: the others may be running on their weights already.
        out.add(CompletableFuture.failedFuture(e));
      }
    }
    return out;
  }

  /** A hint that (layer, expert) will be needed soon; a GPU backend starts its upload. Never waits. */
  default void prefetch(int layer, int expert, ExpertWeights weights) {}

  /**
   * Whether the backend keeps weights of its own that a hint can warm (a GPU's device memory).
   * A backend that computes on the host views it is handed (the CPU) has none: there, a hint can
   * only help the node's weight cache. True unless a backend says otherwise, so that one with a
   * tier of its own never loses its hints by omission.
   */
  default boolean warmsOnHints() {
    return true;
  }

  /**
   * Host memory that expert weights are read from (the checkpoint's mappings), offered as a
   * direct upload source: a GPU backend registers it with the driver so that uploads from it
   * skip the staging copy. The regions must stay mapped until {@link #close}. The CPU backend
   * ignores it.
   */
  default void registerHostMemory(List<MemorySegment> regions) {}

  @Override
  void close();
}
