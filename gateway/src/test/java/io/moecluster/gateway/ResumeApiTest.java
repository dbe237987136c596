package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.generate.TokenEvent;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import io.moecluster.proto.v1.CompleteResponse;
import io.moecluster.proto.v1.FinishReason;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.Token;
import io.moecluster.proto.v1.TokenIds;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The public resume API over a real channel: a Generate call carrying the first k tokens of a
 * completion in {@code resume_token_ids} streams exactly the rest of it (ids, text, logprobs,
 * indices from k, finish reason, usage of the whole completion), for k from 0 to all of them, with
 * seeded sampling, a stop sequence and logprobs.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class ResumeApiTest {
  private static final int MAX_TOKENS = 20;

  @TempDir static Path dir;
  private static OneNodeCluster cluster;
  private static GatewayFixture gateway;
  private static LocalGenerator local;

  @BeforeAll
  static void startCluster() {
    Path model = dir.resolve("tiny-resume");
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 9), model);
    local = LocalGenerator.open(model, 1);
    cluster = OneNodeCluster.start(model);
    gateway = cluster.gateway();
  }

  @AfterAll
  static void stopCluster() {
    if (cluster != null) {
      cluster.close();
    }
    if (local != null) {
      local.close();
    }
  }

  private static GenerateRequest.Builder request(int[] prompt, List<String> stop) {
    TokenIds.Builder ids = TokenIds.newBuilder();
    Arrays.stream(prompt).forEach(ids::addIds);
    return GenerateRequest.newBuilder()
        .setTokenIds(ids)
        .setMaxTokens(MAX_TOKENS)
        .setIgnoreEos(true)
        .setLogprobs(2)
        .addAllStop(stop)
        .setSampling(
            io.moecluster.proto.v1.SamplingParams.newBuilder()
                .setTemperature(0.8f)
                .setTopP(0.9f)
                .setRepetitionPenalty(1.1f)
                .setSeed(77));
  }

  private static GenerationRequest local(int[] prompt, List<String> stop) {
    return new GenerationRequest(
        prompt, new SamplingParams(0.8f, 0, 0.9f, 0f, 1.1f, 77), MAX_TOKENS, stop, true, 2);
  }

  private static void assertResumesExactly(int[] prompt, List<String> stop) {
    List<TokenEvent> events = new ArrayList<>();
    GenerationResult full = local.generate(local(prompt, stop), events::add);
    int[] ids = full.generatedIds();
    for (int k : new int[] {0, 1, ids.length / 2, ids.length - 1, ids.length}) {
      String at = "resumed after " + k + " of " + ids.length;
      GenerateRequest.Builder b = request(prompt, stop);
      Arrays.stream(ids, 0, k).forEach(b::addResumeTokenIds);
      List<GenerateResponse> responses = new ArrayList<>();
      gateway.blocking().generate(b.build()).forEachRemaining(responses::add);
      List<Token> tokens = new ArrayList<>();
      StringBuilder text = new StringBuilder();
      for (GenerateResponse r : responses) {
        // A message without tokens too: its index counts every token before it.
        assertEquals(k + tokens.size(), r.getIndex(), at + ": indices continue at k");
        tokens.addAll(r.getTokensList());
        text.append(r.getText());
      }
      List<TokenEvent> rest = events.subList(k, events.size());
      assertEquals(rest.size(), tokens.size(), at);
      StringBuilder expectedText = new StringBuilder();
      for (int i = 0; i < rest.size(); i++) {
        assertEquals(rest.get(i).tokenId(), tokens.get(i).getId(), at);
        assertEquals(rest.get(i).logprob(), tokens.get(i).getLogprob(), at);
        assertEquals(rest.get(i).topLogprobs().size(), tokens.get(i).getTopLogprobsCount(), at);
        expectedText.append(rest.get(i).textDelta());
      }
      assertEquals(expectedText.toString(), text.toString(), at);
      GenerateResponse last = responses.getLast();
      assertEquals(finishReason(full), last.getFinishReason(), at);
      assertEquals(ids.length, last.getUsage().getCompletionTokens(), at + ": usage counts the whole completion");
      assertEquals(prompt.length, last.getUsage().getPromptTokens(), at);
    }
  }

  private static FinishReason finishReason(GenerationResult r) {
    return switch (r.finishReason()) {
      case EOS -> FinishReason.FINISH_REASON_STOP;
      case STOP_SEQUENCE -> FinishReason.FINISH_REASON_STOP_SEQUENCE;
      case LENGTH -> FinishReason.FINISH_REASON_LENGTH;
      case CANCELLED -> FinishReason.FINISH_REASON_CANCELLED;
    };
  }

  @Test
  void seededSamplingWithLogprobsResumesExactly() {
    assertResumesExactly(local.tokenizer().encode("Resume me from anywhere", true), List.of());
  }

  @Test
  void stopSequenceResumesExactly() {
    int[] prompt = local.tokenizer().encode("A story with a stop", true);
    String text = local.generate(local(prompt, List.of()), e -> {}).text();
    assertTrue(text.length() >= 6, "the model must produce some text: '" + text + "'");
    String stop = text.substring(text.length() / 2, text.length() / 2 + 3);
    assertEquals(
        io.moecluster.core.generate.FinishReason.STOP_SEQUENCE,
        local.generate(local(prompt, List.of(stop)), e -> {}).finishReason());
    assertResumesExactly(prompt, List.of(stop));
  }

  @Test
  void completeReturnsTheTokensAfterTheResumedOnes() {
    int[] prompt = local.tokenizer().encode("Complete after resume", true);
    GenerationResult full = local.generate(local(prompt, List.of()), e -> {});
    int[] ids = full.generatedIds();
    GenerateRequest.Builder b = request(prompt, List.of());
    Arrays.stream(ids, 0, 5).forEach(b::addResumeTokenIds);
    CompleteResponse complete = gateway.blocking().complete(b.build());
    assertArrayEquals(
        Arrays.copyOfRange(ids, 5, ids.length),
        complete.getTokenIdsList().stream().mapToInt(Integer::intValue).toArray());
    assertEquals(ids.length, complete.getUsage().getCompletionTokens());
  }
}
