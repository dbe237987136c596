package io.moecluster.deploy.commands;

import io.moecluster.core.model.WeightPlacement;
import picocli.CommandLine.Option;

/** {@code --weights auto|copy|map}: where the commands that compute in this process keep the weights. */
final class WeightsOption {
  @Option(names = "--weights", paramLabel = "auto|copy|map", defaultValue = "auto",
      description = "copy the weights into memory, or read them in place from the mapped checkpoint; auto copies"
          + " when they take at most half of the memory beside the heap (default: ${DEFAULT-VALUE})")
  String weights;

  WeightPlacement placement() {
    try {
      return WeightPlacement.parse(weights);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("--" + e.getMessage(), e);
    }
  }
}
