package io.moecluster.core.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.config.WeightNames;
import io.moecluster.core.safetensors.SafeTensors;
import io.moecluster.core.safetensors.SafeTensorsWriter;
import io.moecluster.core.safetensors.SafeTensorsWriter.TensorSpec;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** An expert's weights from a checkpoint, and their size, in each stored dtype. */
class ExpertStoreTest {

  @Test
  void anF16ExpertIsWidenedOnceAndSizedFromTheHeader(@TempDir Path dir) {
    ModelConfig config = CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.BF16, 3), dir.resolve("bf16"));
    WeightNames names = config.weightNames();
    int hidden = config.hiddenSize();
    int ffn = config.expertIntermediateSize();
    // Expert 0/1 alone, stored as F16.
    Path f16 = dir.resolve("f16");
    SafeTensorsWriter.write(f16, List.of(
            new TensorSpec(names.expertGate(0, 1), DType.F16, new long[] {ffn, hidden}),
            new TensorSpec(names.expertUp(0, 1), DType.F16, new long[] {ffn, hidden}),
            new TensorSpec(names.expertDown(0, 1), DType.F16, new long[] {hidden, ffn})),
        1, (t, values) -> {
          for (int i = 0; i < values.length; i++) {
            values[i] = (i % 7) / 8f;
          }
        }, Map.of());
    try (SafeTensors st = SafeTensors.open(f16); SafeTensors bf = SafeTensors.open(dir.resolve("bf16"))) {
      ExpertStore store = new ExpertStore(st, config);
      ExpertWeights w = store.expert(0, 1);
      assertEquals(DType.F32, w.gate().dtype());
      assertSame(w, store.expert(0, 1), "converted once, not on every miss and hint");
      assertEquals(w.byteSize(), store.expertBytes(0, 1));
      assertEquals(3L * ffn * hidden * Float.BYTES, store.expertBytes(0, 1));

      ExpertStore views = new ExpertStore(bf, config);
      assertNotSame(views.expert(0, 1), views.expert(0, 1), "BF16 experts are views of the mapping, made anew");
      assertEquals(views.expert(0, 1).byteSize(), views.expertBytes(0, 1));
      assertEquals(3L * ffn * hidden * 2, views.expertBytes(0, 1));
    }
  }
}
