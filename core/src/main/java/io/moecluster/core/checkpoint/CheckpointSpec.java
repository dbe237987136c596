package io.moecluster.core.checkpoint;

import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;

/**
 * What {@link CheckpointWriter} writes.
 *
 * @param tokenizerDir a directory whose tokenizer to copy, or null to train one on the bundled text
 */
public record CheckpointSpec(
    Preset preset, ModelFamily family, DType dtype, long seed, int shards, Path tokenizerDir) {

  public CheckpointSpec {
    if (dtype == DType.F16) {
      throw new IllegalArgumentException("--dtype must be f32 or bf16");
    }
    if (shards < 1) {
      throw new IllegalArgumentException("--shards must be >= 1, got " + shards);
    }
  }

  public static CheckpointSpec of(Preset preset, DType dtype, long seed) {
    return new CheckpointSpec(preset, ModelFamily.MIXTRAL, dtype, seed, 1, null);
  }
}
