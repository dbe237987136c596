package io.moecluster.core.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A generation resumed after its first k tokens continues exactly as the uninterrupted one: the
 * same later events (index, id, text delta, logprobs), the same result, for every k from 0 to the
 * whole completion, with seeded sampling, a repetition penalty, stop sequences and logprobs.
 */
class ResumeTest {
  @TempDir static Path dir;
  static LocalGenerator g;

  @BeforeAll
  static void open() {
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 7), dir);
    g = LocalGenerator.open(dir, 1);
  }

  @AfterAll
  static void close() {
    if (g != null) {
      g.close();
    }
  }

  private record Run(GenerationResult result, List<TokenEvent> events) {}

  private static Run run(GenerationRequest request) {
    List<TokenEvent> events = new ArrayList<>();
    GenerationResult result = g.generate(request, events::add);
    return new Run(result, events);
  }

  /** Resumes after every prefix of the full run and compares with it. */
  private static void assertEveryResumeMatches(GenerationRequest request) {
    Run full = run(request);
    int[] ids = full.result().generatedIds();
    assertTrue(ids.length > 0);
    for (int k = 0; k <= ids.length; k++) {
      Run resumed = run(request.resumedAfter(Arrays.copyOf(ids, k)));
      String at = "resumed after " + k + " of " + ids.length;
      assertEquals(full.events().subList(k, full.events().size()), resumed.events(), at);
      assertArrayEquals(ids, resumed.result().generatedIds(), at);
      assertEquals(full.result().text(), resumed.result().text(), at);
      assertEquals(full.result().finishReason(), resumed.result().finishReason(), at);
      assertArrayEquals(full.result().promptIds(), resumed.result().promptIds(), at);
    }
  }

  @Test
  void seededSamplingWithLogprobsResumesExactly() {
    int[] prompt = g.tokenizer().encode("We hold these truths", true);
    var sampling = new SamplingParams(0.9f, 0, 0.95f, 0f, 1.2f, 42);
    assertEveryResumeMatches(new GenerationRequest(prompt, sampling, 14, List.of(), true, 3));
  }

  @Test
  void greedyResumesExactly() {
    int[] prompt = g.tokenizer().encode("Once upon a time", true);
    assertEveryResumeMatches(new GenerationRequest(prompt, SamplingParams.GREEDY, 10, List.of(), false, 0));
  }

  @Test
  void stopSequenceStateIsRestored() {
    int[] prompt = g.tokenizer().encode("The cluster serves experts", true);
    var sampling = new SamplingParams(0.8f, 40, 1f, 0f, 1f, 7);
    GenerationResult free = g.generate(new GenerationRequest(prompt, sampling, 24, List.of(), true), e -> {});
    String text = free.text();
    assertTrue(text.length() >= 6, "the model must produce some text: '" + text + "'");
    // A stop sequence from the middle of the free run: held-back text and the match span tokens.
    String stop = text.substring(text.length() / 2, text.length() / 2 + 3);
    GenerationRequest request = new GenerationRequest(prompt, sampling, 24, List.of(stop, "\u0000never"), true, 2);
    assertEquals(FinishReason.STOP_SEQUENCE, run(request).result().finishReason());
    assertEveryResumeMatches(request);
  }

  @Test
  void resumedTokensThatEndTheGenerationFinishAtOnce() {
    int[] prompt = g.tokenizer().encode("Hello", true);
    int eos = g.eosTokenIds().iterator().next();
    Run eosRun = run(new GenerationRequest(prompt, SamplingParams.GREEDY, 8, List.of(), false, 0, new int[] {5, eos}));
    assertEquals(List.of(), eosRun.events());
    assertEquals(FinishReason.EOS, eosRun.result().finishReason());
    assertArrayEquals(new int[] {5, eos}, eosRun.result().generatedIds());

    Run full = run(new GenerationRequest(prompt, SamplingParams.GREEDY, 3, List.of(), true, 0, new int[] {5, 6, 7}));
    assertEquals(List.of(), full.events());
    assertEquals(FinishReason.LENGTH, full.result().finishReason());
  }

  @Test
  void badResumeIdsAreRefused() {
    int[] prompt = g.tokenizer().encode("Hello", true);
    int vocab = g.config().vocabSize();
    var outside = assertThrows(IllegalArgumentException.class, () -> g.generate(
        new GenerationRequest(prompt, SamplingParams.GREEDY, 4, List.of(), false, 0, new int[] {vocab}), e -> {}));
    assertTrue(outside.getMessage().startsWith("resume_token_ids"), outside.getMessage());
    var tooMany = assertThrows(IllegalArgumentException.class,
        () -> new GenerationRequest(prompt, SamplingParams.GREEDY, 2, List.of(), false, 0, new int[] {1, 2, 3}));
    assertTrue(tooMany.getMessage().startsWith("resume_token_ids"), tooMany.getMessage());
    int context = g.config().contextLength();
    int[] longResume = new int[context];
    var tooLong = assertThrows(IllegalArgumentException.class, () -> g.generate(
        new GenerationRequest(prompt, SamplingParams.GREEDY, context + 1, List.of(), true, 0, longResume), e -> {}));
    assertTrue(tooLong.getMessage().startsWith("resume_token_ids"), tooLong.getMessage());
  }
}
