package io.moecluster.core.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LogprobsTest {

  @Test
  void logSoftmaxAndTopAlternatives() {
    float[] logits = {1f, 3f, 2f, 3f, -1f};
    Logprobs lp = new Logprobs(logits);
    double z = 0;
    for (float v : logits) {
      z += Math.exp(v);
    }
    assertEquals((float) (2 - Math.log(z)), lp.of(2), 1e-6f);
    List<TokenLogprob> top = lp.top(3);
    assertEquals(List.of(1, 3, 2), top.stream().map(TokenLogprob::tokenId).toList(), "ties: lower id first");
    assertEquals(lp.of(1), top.get(0).logprob());
    assertEquals(5, lp.top(10).size());
  }

  @Test
  void askingForLogprobsChangesNoToken(@TempDir Path dir) {
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 4), dir);
    try (LocalGenerator g = LocalGenerator.open(dir, 1)) {
      var sampling = new SamplingParams(0.9f, 0, 0.95f, 0f, 1f, 11);
      int[] prompt = g.tokenizer().encode("We hold these truths");
      List<TokenEvent> events = new ArrayList<>();
      var with = g.generate(new GenerationRequest(prompt, sampling, 8, List.of(), true, 3), events::add);
      var without = g.generate(new GenerationRequest(prompt, sampling, 8, List.of(), true), e -> {});
      assertArrayEquals(without.generatedIds(), with.generatedIds());
      for (TokenEvent e : events) {
        assertTrue(e.hasLogprob());
        assertTrue(e.logprob() <= 0f);
        assertEquals(3, e.topLogprobs().size());
        assertTrue(e.topLogprobs().get(0).logprob() >= e.logprob());
      }
      List<TokenEvent> plain = new ArrayList<>();
      g.generate(new GenerationRequest(prompt, sampling, 2, List.of(), true), plain::add);
      assertFalse(plain.get(0).hasLogprob());
    }
  }

  @Test
  void tooManyAlternativesAreRefused() {
    var e = assertThrows(IllegalArgumentException.class,
        () -> new GenerationRequest(new int[] {1}, SamplingParams.GREEDY, 1, List.of(), false, 21));
    assertTrue(e.getMessage().contains("logprobs"));
  }
}
