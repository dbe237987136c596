package io.moecluster.core.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.model.ForwardHarness;
import io.moecluster.core.model.TestCheckpoints;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Continuous batching must not change any sequence: 8 different requests (prompt lengths 1 to 21,
 * greedy and seeded sampling with temperature, top-k, top-p, min-p and repetition penalty,
 * different max_tokens, ignore_eos on and off, so sequences leave the batch at different steps)
 * give exactly the same
 * token ids, text and finish reason alone and all in one batch, on the small preset with the
 * Vector API kernels on 2 threads. Exact equality: the kernels are batch invariant and the
 * sampler's draw depends only on (seed, position).
 */
class BatchInvarianceTest {

  @Test
  void batchEqualsAlone() {
    Path dir = TestCheckpoints.get(Preset.SMALL, ModelFamily.MIXTRAL, DType.F32);
    int[] lengths = {1, 7, 3, 21, 12, 2, 5, 9};
    int[] maxTokens = {10, 14, 6, 8, 16, 12, 9, 11};
    List<GenerationRequest> requests = new ArrayList<>();
    try (LocalGenerator gen = LocalGenerator.open(dir, 2)) {
      int vocab = gen.config().vocabSize();
      for (int i = 0; i < lengths.length; i++) {
        SamplingParams sampling =
            switch (i % 4) {
              case 0 -> SamplingParams.GREEDY;
              case 1 -> new SamplingParams(0.9f, 0, 1f, 0f, 1f, 1000L + i);
              case 2 -> new SamplingParams(1.3f, 50, 0.9f, 0.02f, 1.1f, 2000L + i);
              default -> new SamplingParams(0.7f, 0, 0.95f, 0f, 1.3f, 3000L + i);
            };
        requests.add(
            new GenerationRequest(
                ForwardHarness.prompt(500L + i, lengths[i], vocab), sampling, maxTokens[i], List.of(), i % 3 == 0));
      }

      List<GenerationResult> alone = new ArrayList<>();
      for (GenerationRequest r : requests) {
        alone.add(gen.generate(r, e -> {}));
      }
      List<GenerationResult> batch = gen.generateBatch(requests);
      // A batch of the same requests in another order, twice over: still the same per request.
      List<GenerationRequest> shuffled = new ArrayList<>(requests);
      java.util.Collections.reverse(shuffled);
      shuffled.addAll(requests.subList(0, 3));
      List<GenerationResult> batch2 = gen.generateBatch(shuffled);

      assertEquals(requests.size(), batch.size());
      int sampled = 0;
      for (int i = 0; i < requests.size(); i++) {
        GenerationResult a = alone.get(i);
        GenerationResult b = batch.get(i);
        GenerationResult c = batch2.get(requests.size() - 1 - i);
        String what = "request " + i + " " + Arrays.toString(a.generatedIds());
        System.out.println("[reference] batch " + what + " " + a.finishReason());
        assertArrayEquals(a.generatedIds(), b.generatedIds(), what + " in a batch");
        assertEquals(a.finishReason(), b.finishReason(), what);
        assertEquals(a.text(), b.text(), what);
        assertArrayEquals(a.generatedIds(), c.generatedIds(), what + " in the reversed batch");
        if (i < 3) {
          assertArrayEquals(a.generatedIds(), batch2.get(requests.size() + i).generatedIds(), what + " (repeat)");
        }
        assertTrue(a.generatedIds().length >= 1 && a.generatedIds().length <= maxTokens[i]);
        if (!requests.get(i).sampling().greedy()) {
          sampled++;
        }
      }
      assertTrue(sampled >= 4);
    }
  }
}
