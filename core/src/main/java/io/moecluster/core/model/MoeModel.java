package io.moecluster.core.model;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.safetensors.SafeTensors;
import java.nio.file.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A loaded checkpoint: its config, the mapped tensors, the dense weights and the kernels that run
 * them. Experts are reached through {@link #experts()} (in process) or through any other
 * {@link ExpertExecutor}. The weights are read in place or copied as the {@link WeightPlacement}
 * decides: the dense ones at load, the experts of {@link #experts()} on first use or
 * {@link LocalExperts#loadAll}. Closing it frees the copies and unmaps the checkpoint.
 */
public final class MoeModel implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(MoeModel.class);

  private final Path dir;
  private final ModelConfig config;
  private final SafeTensors tensors;
  private final DenseWeights dense;
  private final Kernels kernels;
  private final WeightPlacement placement;
  private final WeightCopies copies;
  private final boolean denseCopied;
  private LocalExperts experts; // guarded by this

  private MoeModel(Path dir, ModelConfig config, SafeTensors tensors, DenseWeights dense, Kernels kernels,
      WeightPlacement placement, WeightCopies copies, boolean denseCopied) {
    this.dir = dir;
    this.config = config;
    this.tensors = tensors;
    this.dense = dense;
    this.kernels = kernels;
    this.placement = placement;
    this.copies = copies;
    this.denseCopied = denseCopied;
  }

  /** {@link #load(Path, Kernels, WeightPlacement)} with {@link WeightPlacement#AUTO}. */
  public static MoeModel load(Path dir, Kernels kernels) {
    return load(dir, kernels, WeightPlacement.AUTO);
  }

  /**
   * Reads config.json and maps the safetensors of {@code dir}; checks every dense tensor, and
   * copies the dense matrices when {@code placement} copies their bytes.
   */
  public static MoeModel load(Path dir, Kernels kernels, WeightPlacement placement) {
    ModelConfig config = ModelConfig.load(dir);
    SafeTensors tensors = SafeTensors.open(dir);
    WeightCopies copies = new WeightCopies();
    try {
      DenseWeights dense = DenseWeights.load(tensors, config);
      long denseBytes = dense.matrixBytes();
      boolean copy = placement.copies(denseBytes);
      if (copy) {
        dense = dense.withMatrices(copies::copy);
      }
      log.info("{}: dense weights ({} MB) {} (weights = {})", dir, denseBytes >> 20,
          copy ? "copied into memory" : "read in place from the mapped checkpoint", placement.configValue());
      return new MoeModel(dir, config, tensors, dense, kernels, placement, copies, copy);
    } catch (RuntimeException e) {
      copies.close();
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

  /**
   * An executor that runs the experts in this process: on copies of their weights when the
   * placement copies the whole checkpoint (this process then reads all of it), else in place.
   */
  public synchronized LocalExperts experts() {
    if (experts == null) { // one instance: a second would copy every expert again
      experts = placement.copies(tensors.totalBytes())
          ? new LocalExperts(expertStore(), kernels, copies::copy)
          : new LocalExperts(expertStore(), kernels);
    }
    return experts;
  }

  /** Whether the dense matrices are copies rather than views into the mapped checkpoint. */
  public boolean denseCopied() {
    return denseCopied;
  }

  /** Bytes of weights copied into memory so far (dense, and experts of {@link #experts()}). */
  public long copiedBytes() {
    return copies.bytes();
  }

  /** A fresh KV cache for one sequence. */
  public KvCache newKvCache(int initialCapacity) {
    return new KvCache(
        config.numLayers(), config.numKvHeads() * config.headDim(), config.contextLength(), initialCapacity);
  }

  @Override
  public void close() {
    copies.close();
    tensors.close();
  }
}
