package io.moecluster.core.model;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.safetensors.SafeTensors;
import java.nio.file.Path;

/**
 * A loaded checkpoint: its config, the mapped tensors, the dense weights and the kernels that run
 * them. Experts are reached through {@link #experts()} (in process) or through any other
 * {@link ExpertExecutor}. Closing it unmaps the checkpoint.
 */
public final class MoeModel implements AutoCloseable {
  private final Path dir;
  private final ModelConfig config;
  private final SafeTensors tensors;
  private final DenseWeights dense;
  private final Kernels kernels;

  private MoeModel(Path dir, ModelConfig config, SafeTensors tensors, DenseWeights dense, Kernels kernels) {
    this.dir = dir;
    this.config = config;
    this.tensors = tensors;
    this.dense = dense;
    this.kernels = kernels;
  }

  /** Reads config.json and maps the safetensors of {@code dir}; checks every dense tensor. */
  public static MoeModel load(Path dir, Kernels kernels) {
    ModelConfig config = ModelConfig.load(dir);
    SafeTensors tensors = SafeTensors.open(dir);
    try {
      DenseWeights dense = DenseWeights.load(tensors, config);
      return new MoeModel(dir, config, tensors, dense, kernels);
    } catch (RuntimeException e) {
      tensors.close();
      throw e;
    }
  }

  public Path dir() {
    return dir;
  }

  public ModelConfig config() {
    return config;
  }

  public SafeTensors tensors() {
    return tensors;
  }

  public DenseWeights dense() {
    return dense;
  }

  public Kernels kernels() {
    return kernels;
  }

  /** Where this checkpoint's experts are found. */
  public ExpertStore expertStore() {
    return new ExpertStore(tensors, config);
  }

  /** An executor that runs the experts in this process. */
  public ExpertExecutor experts() {
    return new LocalExperts(expertStore(), kernels);
  }

  /** A fresh KV cache for one sequence. */
  public KvCache newKvCache(int initialCapacity) {
    return new KvCache(
        config.numLayers(), config.numKvHeads() * config.headDim(), config.contextLength(), initialCapacity);
  }

  @Override
  public void close() {
    tensors.close();
  }
}
