package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.proto.v1.DetokenizeRequest;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GetModelInfoRequest;
import io.moecluster.proto.v1.SamplingParams;
import io.moecluster.proto.v1.TokenIds;
import io.moecluster.proto.v1.TokenizeRequest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.UnaryOperator;
import java.util.stream.Stream;
import org.apache.pekko.actor.typed.ActorSystem;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Every bad field of a GenerateRequest, over a real channel: the status and the field's name. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RequestValidationTest {
  private static ActorSystem<Void> system;
  private static GatewayFixture gateway;
  private static int context;
  private static int vocab;

  @BeforeAll
  static void start() {
    system = TestClusters.start("validation", List.of("gateway"));
    gateway =
        GatewayFixture.start(
            system,
            GatewayFixture.settings(
                "model-name = tiny-moe, max-prompt-chars = 1000, max-max-tokens = 512"),
            TestModel.tiny());
    ModelConfig config = ModelConfig.load(TestModel.tiny());
    context = config.contextLength();
    vocab = config.vocabSize();
  }

  @AfterAll
  static void stop() {
    if (gateway != null) {
      gateway.close();
    }
    TestClusters.stop(system);
  }

  private static GenerateRequest.Builder ok() {
    return GenerateRequest.newBuilder().setText("Hello there").setMaxTokens(4);
  }

  private static Arguments bad(
      String name, String field, UnaryOperator<GenerateRequest.Builder> edit) {
    return Arguments.of(name, field, edit);
  }

  private static SamplingParams.Builder sp() {
    return SamplingParams.newBuilder();
  }

  static Stream<Arguments> badRequests() {
    return Stream.of(
        bad("no prompt", "prompt", b -> b.clearPrompt()),
        bad("empty text", "prompt", b -> b.setText("")),
        bad("empty token ids", "prompt", b -> b.setTokenIds(TokenIds.getDefaultInstance())),
        bad("text over max-prompt-chars", "prompt", b -> b.setText("x".repeat(1001))),
        bad(
            "prompt as long as the context",
            "prompt",
            b -> b.setTokenIds(TokenIds.newBuilder().addAllIds(Collections.nCopies(context, 5)))),
        bad(
            "negative token id",
            "prompt.token_ids",
            b -> b.setTokenIds(TokenIds.newBuilder().addIds(1).addIds(-1))),
        bad(
            "token id = vocab",
            "prompt.token_ids",
            b -> b.setTokenIds(TokenIds.newBuilder().addIds(vocab))),
        bad(
            "chat with token ids",
            "chat",
            b -> b.setTokenIds(TokenIds.newBuilder().addIds(1)).setChat(true)),
        bad("max_tokens over the limit", "max_tokens", b -> b.setMaxTokens(513)),
        bad("max_tokens as uint32 max", "max_tokens", b -> b.setMaxTokens(-1)),
        bad(
            "negative temperature",
            "sampling.temperature",
            b -> b.setSampling(sp().setTemperature(-0.1f))),
        bad(
            "NaN temperature",
            "sampling.temperature",
            b -> b.setSampling(sp().setTemperature(Float.NaN))),
        bad(
            "temperature > 100",
            "sampling.temperature",
            b -> b.setSampling(sp().setTemperature(100.5f))),
        bad("top_p 0", "sampling.top_p", b -> b.setSampling(sp().setTopP(0f))),
        bad("top_p > 1", "sampling.top_p", b -> b.setSampling(sp().setTopP(1.01f))),
        bad("top_p NaN", "sampling.top_p", b -> b.setSampling(sp().setTopP(Float.NaN))),
        bad("top_k < 0", "sampling.top_k", b -> b.setSampling(sp().setTopK(-1))),
        bad("min_p < 0", "sampling.min_p", b -> b.setSampling(sp().setMinP(-0.01f))),
        bad("min_p > 1", "sampling.min_p", b -> b.setSampling(sp().setMinP(1.5f))),
        bad(
            "repetition_penalty 0",
            "sampling.repetition_penalty",
            b -> b.setSampling(sp().setRepetitionPenalty(0f))),
        bad(
            "repetition_penalty < 0",
            "sampling.repetition_penalty",
            b -> b.setSampling(sp().setRepetitionPenalty(-1f))),
        bad("logprobs over the limit", "logprobs", b -> b.setLogprobs(21)),
        bad("negative resume id", "resume_token_ids", b -> b.addResumeTokenIds(3).addResumeTokenIds(-2)),
        bad("resume id = vocab", "resume_token_ids", b -> b.addResumeTokenIds(vocab)),
        bad(
            "more resume ids than max_tokens",
            "resume_token_ids",
            b -> b.setMaxTokens(2).addAllResumeTokenIds(List.of(5, 6, 7))),
        bad(
            "prompt and resume ids over the context",
            "resume_token_ids",
            b ->
                b.setTokenIds(TokenIds.newBuilder().addAllIds(Collections.nCopies(context - 2, 5)))
                    .setMaxTokens(8)
                    .addAllResumeTokenIds(List.of(5, 6, 7))),
        bad("empty stop sequence", "stop", b -> b.addStop("")),
        bad(
            "more stop sequences than max-stop-sequences",
            "stop",
            b -> b.addAllStop(Collections.nCopies(17, "x"))),
        bad(
            "stop sequence over max-stop-sequence-chars",
            "stop",
            b -> b.addStop("end").addStop("x".repeat(257))));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("badRequests")
  void badFieldIsInvalidArgumentNamingTheField(
      String name, String field, UnaryOperator<GenerateRequest.Builder> edit) {
    GenerateRequest request = edit.apply(ok()).build();
    for (boolean streaming : new boolean[] {true, false}) {
      StatusRuntimeException e =
          assertThrows(
              StatusRuntimeException.class,
              () -> {
                if (streaming) {
                  gateway.blocking().generate(request).forEachRemaining(r -> {});
                } else {
                  gateway.blocking().complete(request);
                }
              });
      assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode(), name);
      String description = e.getStatus().getDescription();
      assertTrue(description.startsWith(field + ":"), name + ": " + description);
      assertTrue(!description.contains("\tat "), "no stack trace: " + description);
    }
  }

  @Test
  void stopLimitsAreNamedAndRequestsAtTheLimitsPass() {
    StatusRuntimeException e =
        assertThrows(
            StatusRuntimeException.class,
            () -> gateway.blocking().complete(ok().addAllStop(Collections.nCopies(17, "x")).build()));
    assertTrue(
        e.getStatus().getDescription().contains("17 stop sequences, the limit is 16"),
        e.getStatus().getDescription());
    e =
        assertThrows(
            StatusRuntimeException.class,
            () -> gateway.blocking().complete(ok().addStop("x".repeat(257)).build()));
    assertTrue(
        e.getStatus().getDescription().contains("257 characters, the limit is 256"),
        e.getStatus().getDescription());
    // At both limits the request passes validation and only finds no router.
    GenerateRequest atLimits =
        ok().addAllStop(Collections.nCopies(16, "y".repeat(256))).build();
    e = assertThrows(StatusRuntimeException.class, () -> gateway.blocking().complete(atLimits));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.getStatus().toString());
  }

  @Test
  void tokenizeAppliesMaxPromptChars() {
    TokenizeRequest tooLong = TokenizeRequest.newBuilder().setText("x".repeat(1001)).build();
    StatusRuntimeException e =
        assertThrows(StatusRuntimeException.class, () -> gateway.blocking().tokenize(tooLong));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertTrue(
        e.getStatus().getDescription().startsWith("text: 1001 characters, the limit is 1000"),
        e.getStatus().getDescription());
    assertTrue(
        gateway
                .blocking()
                .tokenize(TokenizeRequest.newBuilder().setText("x".repeat(1000)).build())
                .getIdsCount()
            > 0);
  }

  /**
   * A tokenizer without byte fallback or unk token refuses a character outside its vocabulary:
   * that is the client's text, so INVALID_ARGUMENT naming the field, not INTERNAL.
   */
  @Test
  void textTheTokenizerCannotEncodeIsInvalidArgumentNamingTheField(@TempDir Path dir)
      throws IOException {
    Path model = dir.resolve("ascii-only");
    Files.createDirectories(model);
    Files.copy(TestModel.tiny().resolve("config.json"), model.resolve("config.json"));
    Files.writeString(model.resolve("tokenizer.json"), asciiOnlyTokenizer());
    try (GatewayFixture ascii =
        GatewayFixture.start(system, GatewayFixture.settings(""), model)) {
      String text = "caf\u00e9";
      List<Map.Entry<String, Executable>> calls =
          List.of(
              Map.entry(
                  "text",
                  () -> ascii.blocking().tokenize(TokenizeRequest.newBuilder().setText(text).build())),
              Map.entry(
                  "prompt",
                  () ->
                      ascii
                          .blocking()
                          .generate(ok().setText(text).build())
                          .forEachRemaining(r -> {})),
              Map.entry("prompt", () -> ascii.blocking().complete(ok().setText(text).build())));
      for (var call : calls) {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, call.getValue());
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode(), e.getStatus().toString());
        String description = e.getStatus().getDescription();
        assertTrue(description.startsWith(call.getKey() + ":"), description);
        assertTrue(description.contains("U+E9"), "names the character: " + description);
        assertTrue(!description.contains("\tat "), "no stack trace: " + description);
      }
      // Text inside the vocabulary still tokenizes.
      assertEquals(
          4, ascii.blocking().tokenize(TokenizeRequest.newBuilder().setText("cafe").build()).getIdsCount());
    }
  }

  /** A BPE tokenizer.json whose vocabulary is printable ASCII only, with no fallback for the rest. */
  private static String asciiOnlyTokenizer() {
    StringBuilder vocab = new StringBuilder();
    for (char c = 'a'; c <= 'z'; c++) {
      vocab.append(vocab.isEmpty() ? "" : ",").append('"').append(c).append("\":").append(c - 'a');
    }
    return """
        {"model": {"type": "BPE", "vocab": {%s}, "merges": []}}
        """.formatted(vocab);
  }

  @Test
  void tooLongPromptSaysTokensAndContext() {
    GenerateRequest request =
        ok().setTokenIds(TokenIds.newBuilder().addAllIds(Collections.nCopies(context + 5, 5)))
            .build();
    StatusRuntimeException e =
        assertThrows(StatusRuntimeException.class, () -> gateway.blocking().complete(request));
    assertTrue(
        e.getStatus()
            .getDescription()
            .contains((context + 5) + " tokens, the context is " + context),
        e.getStatus().getDescription());
  }

  @Test
  void unknownModelNamesTheServedOne() {
    StatusRuntimeException e =
        assertThrows(
            StatusRuntimeException.class,
            () -> gateway.blocking().complete(ok().setModel("gpt-9").build()));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertTrue(e.getStatus().getDescription().startsWith("model:"), e.getStatus().getDescription());
    assertTrue(e.getStatus().getDescription().contains("tiny-moe"), e.getStatus().getDescription());
    assertEquals(
        Status.Code.INVALID_ARGUMENT,
        assertThrows(
                StatusRuntimeException.class,
                () ->
                    gateway.blocking().tokenize(TokenizeRequest.newBuilder().setModel("x").build()))
            .getStatus()
            .getCode());
    assertEquals(
        Status.Code.INVALID_ARGUMENT,
        assertThrows(
                StatusRuntimeException.class,
                () ->
                    gateway
                        .blocking()
                        .getModelInfo(GetModelInfoRequest.newBuilder().setModel("x").build()))
            .getStatus()
            .getCode());
  }

  @Test
  void detokenizeRejectsUnknownIds() {
    StatusRuntimeException e =
        assertThrows(
            StatusRuntimeException.class,
            () ->
                gateway
                    .blocking()
                    .detokenize(DetokenizeRequest.newBuilder().addIds(vocab + 3).build()));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertTrue(e.getStatus().getDescription().startsWith("ids:"));
  }

  @Test
  void validRequestWithoutRouterIsUnavailable() {
    // Passes validation (max_tokens far past the context is capped, not refused), then finds no
    // router.
    GenerateRequest request =
        GenerateRequest.newBuilder()
            .setTokenIds(TokenIds.newBuilder().addAllIds(Collections.nCopies(context - 1, 5)))
            .setMaxTokens(512)
            .build();
    StatusRuntimeException e =
        assertThrows(StatusRuntimeException.class, () -> gateway.blocking().complete(request));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    assertTrue(
        e.getStatus().getDescription().contains("no router"), e.getStatus().getDescription());
    GatewayFixture.await(
        "the slot to be freed",
        java.time.Duration.ofSeconds(2),
        () -> gateway.server.runningStreams() == 0);
  }
}
