package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.protobuf.CodedOutputStream;
import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.moecluster.gateway.security.GatewaySecurity;
import io.moecluster.proto.v1.DetokenizeRequest;
import io.moecluster.proto.v1.FinishReason;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.SamplingParams;
import io.moecluster.proto.v1.TokenIds;
import io.moecluster.proto.v1.TokenizeRequest;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.IntStream;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Malformed and extreme requests through a real Netty channel, as raw bytes so that nothing on the
 * client side cleans them up: random and non-UTF-8 text, huge and negative numbers, NaN and
 * infinite sampling values, unknown fields, truncated, empty, garbage and oversized messages, calls
 * with no or two request messages. Each must end with a clear status (OK, INVALID_ARGUMENT or
 * RESOURCE_EXHAUSTED, with a message), never INTERNAL or UNKNOWN, while valid streams running beside
 * them get every token. Case i draws from {@code new SplittableRandom(seed + i)}: a failure names
 * its seed and case, and {@code -Dmoe.fuzz.seed=S -Dmoe.fuzz.cases=N} replays or widens the run.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class GatewayFuzzTest {
  private static final long SEED = Long.getLong("moe.fuzz.seed", 20261122L);
  private static final int CASES = Integer.getInteger("moe.fuzz.cases", 400);
  private static final int MAX_TOKENS = 48;
  private static final int MAX_PROMPT_CHARS = 20_000;
  private static final int MAX_MESSAGE_BYTES = 256 * 1024;

  private static final Set<Status.Code> CLEAR =
      EnumSet.of(Status.Code.OK, Status.Code.INVALID_ARGUMENT, Status.Code.RESOURCE_EXHAUSTED);

  private static ActorSystem<Void> system;
  private static TestRouter router;
  private static GatewayServer gateway;
  private static ManagedChannel channel;

  @BeforeAll
  static void start() {
    system = TestClusters.start("fuzz", List.of("gateway"));
    router = new TestRouter();
    // Every request runs to its max_tokens (finish reason "length"): the valid streams are checked
    // token by token.
    router.tokens = 1_000_000;
    router.interval = Duration.ofMillis(2);
    system.systemActorOf(router.behavior(), "test-router", Props.empty());
    GatewaySettings settings = GatewayFixture.settings(
        "max-running = 32, max-queued = 64, default-max-tokens = 16, max-max-tokens = %d,"
            .formatted(MAX_TOKENS)
            + " max-prompt-chars = %d, max-inbound-message-bytes = %d".formatted(MAX_PROMPT_CHARS, MAX_MESSAGE_BYTES));
    gateway = GatewayServer.start(system, settings, new GatewaySecurity(Optional.empty(), List.of(), 1000),
        TestModel.tiny());
    GatewayFixture.await("SERVING", Duration.ofSeconds(10), gateway::isServing);
    channel = ManagedChannelBuilder.forAddress("127.0.0.1", gateway.port()).usePlaintext()
        .maxInboundMessageSize(16 << 20).build();
  }

  @AfterAll
  static void stop() throws InterruptedException {
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    if (gateway != null) {
      gateway.shutdownGracefully(Duration.ofSeconds(1));
    }
    TestClusters.stop(system);
  }

  /** What a case sends and, where the case decides it, the one status it must get. */
  record Case(String kind, MethodDescriptor<byte[], byte[]> method, List<byte[]> messages, Status.Code expected) {}

  record Outcome(Case c, int index, Status status, int responses) {}

  @Test
  void everyMalformedOrExtremeRequestGetsAClearStatusWhileValidStreamsFinish() throws Exception {
    AtomicBoolean fuzzing = new AtomicBoolean(true);
    AtomicInteger validDone = new AtomicInteger();
    List<String> validErrors = Collections.synchronizedList(new ArrayList<>());
    ExecutorService valid = Executors.newFixedThreadPool(3);
    List<Future<?>> validRuns = new ArrayList<>();
    for (int v = 0; v < 3; v++) {
      int stream = v;
      validRuns.add(valid.submit(() -> {
        // Valid streams beside the fuzzing, at least two each, until it ends.
        for (int round = 0; fuzzing.get() || round < 2; round++) {
          String problem = validStream("valid stream " + stream + " round " + round);
          if (problem == null) {
            validDone.incrementAndGet();
          } else {
            validErrors.add(problem);
          }
        }
      }));
    }

    ExecutorService fuzz = Executors.newFixedThreadPool(4);
    List<Outcome> outcomes;
    try {
      List<Future<Outcome>> futures = IntStream.range(0, CASES)
          .mapToObj(i -> fuzz.submit(() -> {
            Case c = fuzzCase(new SplittableRandom(SEED + i));
            return call(c, i);
          }))
          .toList();
      outcomes = new ArrayList<>();
      for (Future<Outcome> f : futures) {
        outcomes.add(f.get(60, TimeUnit.SECONDS));
      }
    } finally {
      fuzzing.set(false);
      fuzz.shutdownNow();
    }
    for (Future<?> f : validRuns) {
      f.get(60, TimeUnit.SECONDS);
    }
    valid.shutdownNow();

    Map<String, Map<Status.Code, Integer>> seen = new TreeMap<>();
    List<String> problems = new ArrayList<>();
    for (Outcome o : outcomes) {
      Status.Code code = o.status().getCode();
      seen.computeIfAbsent(o.c().kind(), k -> new TreeMap<>()).merge(code, 1, Integer::sum);
      String where = "case " + o.index() + " (" + o.c().kind() + ", seed " + SEED + "): " + o.status();
      // gRPC's transport ends a one-message call at a second message by closing the stream while
      // the client still sends, which the client sees as RST_STREAM: CANCELLED, and never as more.
      boolean transportRefusal = o.c().kind().equals("two request messages") && code == Status.Code.CANCELLED;
      if (!CLEAR.contains(code) && !transportRefusal) {
        problems.add("unclear status, " + where);
      } else if (o.c().expected() != null && code != o.c().expected()) {
        problems.add("expected " + o.c().expected() + ", " + where);
      } else if (code != Status.Code.OK
          && (o.status().getDescription() == null || o.status().getDescription().isBlank())) {
        problems.add("no message, " + where);
      }
    }
    System.out.println("fuzz seed " + SEED + ", " + CASES + " cases: " + seen + "; valid streams finished: "
        + validDone.get());
    if (!problems.isEmpty()) {
      fail(problems.size() + " of " + CASES + " cases went wrong; first ones:\n"
          + String.join("\n", problems.subList(0, Math.min(10, problems.size()))));
    }
    assertEquals(List.of(), validErrors, "valid streams beside the fuzzing");
    assertTrue(validDone.get() >= 6, "valid streams finished: " + validDone.get());
    // The run exercised both sides: refusals and requests that went through.
    long refused = outcomes.stream().filter(o -> o.status().getCode() == Status.Code.INVALID_ARGUMENT).count();
    long served = outcomes.stream().filter(o -> o.status().isOk()).count();
    assertTrue(refused > CASES / 10 && served > CASES / 10, "refused " + refused + ", served " + served);
    GatewayFixture.await("every slot freed", Duration.ofSeconds(10), () -> gateway.runningStreams() == 0
        && gateway.queuedStreams() == 0);
  }

  /** A valid Generate stream; null when it gave exactly the tokens it asked for, else what went wrong. */
  private static String validStream(String prompt) {
    GenerateRequest request = GenerateRequest.newBuilder().setText(prompt).setMaxTokens(MAX_TOKENS)
        .setSampling(SamplingParams.newBuilder().setTemperature(0f)).build();
    List<Integer> ids = new ArrayList<>();
    FinishReason finish = FinishReason.FINISH_REASON_UNSPECIFIED;
    try {
      var it = InferenceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS).generate(request);
      while (it.hasNext()) {
        GenerateResponse r = it.next();
        r.getTokensList().forEach(t -> ids.add(t.getId()));
        if (r.getFinishReason() != FinishReason.FINISH_REASON_UNSPECIFIED) {
          finish = r.getFinishReason();
        }
      }
    } catch (RuntimeException e) {
      return prompt + ": " + Status.fromThrowable(e);
    }
    List<Integer> expected = IntStream.range(10, 10 + MAX_TOKENS).boxed().toList();
    if (!ids.equals(expected) || finish != FinishReason.FINISH_REASON_LENGTH) {
      return prompt + ": got " + ids.size() + " tokens " + ids + ", finish " + finish;
    }
    return null;
  }

  // ---- the cases ----

  private static final MethodDescriptor<byte[], byte[]> GENERATE = raw(InferenceGrpc.getGenerateMethod());
  private static final MethodDescriptor<byte[], byte[]> COMPLETE = raw(InferenceGrpc.getCompleteMethod());
  private static final MethodDescriptor<byte[], byte[]> TOKENIZE = raw(InferenceGrpc.getTokenizeMethod());
  private static final MethodDescriptor<byte[], byte[]> DETOKENIZE = raw(InferenceGrpc.getDetokenizeMethod());

  static Case fuzzCase(SplittableRandom r) {
    MethodDescriptor<byte[], byte[]> generation = r.nextBoolean() ? GENERATE : COMPLETE;
    return switch (r.nextInt(13)) {
      case 0 -> new Case("random text", generation, List.of(base(r).setText(randomText(r, 200)).build().toByteArray()),
          null);
      case 1 -> new Case("invalid utf-8 text", generation,
          List.of(concat(base(r).clearPrompt().build().toByteArray(), field(GenerateRequest.TEXT_FIELD_NUMBER,
              invalidUtf8(r)))), Status.Code.INVALID_ARGUMENT);
      case 2 -> new Case("extreme numbers", generation, List.of(extreme(r, "extreme numbers").toByteArray()), null);
      case 3 -> new Case("non-finite sampling", generation, List.of(base(r).setSampling(SamplingParams.newBuilder()
          .setTemperature(nonFinite(r))).build().toByteArray()), Status.Code.INVALID_ARGUMENT);
      case 4 -> new Case("random token ids", generation, List.of(base(r).setTokenIds(randomIds(r)).build()
          .toByteArray()), null);
      case 5 -> new Case("unknown fields", generation, List.of(concat(base(r).build().toByteArray(),
          unknownFields(r))), Status.Code.OK);
      case 6 -> new Case("garbage", generation, List.of(randomBytes(r, r.nextInt(1, 300))), null);
      case 7 -> {
        byte[] whole = extreme(r, randomText(r, 60)).toByteArray();
        yield new Case("truncated", generation, List.of(java.util.Arrays.copyOf(whole, r.nextInt(whole.length))),
            null);
      }
      case 8 -> new Case("empty message", generation, List.of(new byte[0]), Status.Code.INVALID_ARGUMENT);
      case 9 -> r.nextBoolean()
          ? new Case("oversized message", generation, List.of(base(r).setText("a".repeat(MAX_MESSAGE_BYTES + 1))
              .build().toByteArray()), Status.Code.RESOURCE_EXHAUSTED)
          : new Case("prompt over max-prompt-chars", generation, List.of(base(r)
              .setText("ab ".repeat(MAX_PROMPT_CHARS / 3 + 1)).build().toByteArray()), Status.Code.INVALID_ARGUMENT);
      case 10 -> r.nextBoolean()
          ? new Case("no request message", generation, List.of(), Status.Code.INVALID_ARGUMENT)
          : new Case("two request messages", asClientStreaming(generation),
              List.of(base(r).build().toByteArray(), base(r).build().toByteArray()), null);
      case 11 -> new Case("tokenize", TOKENIZE, List.of(r.nextInt(4) == 0
          ? concat(new byte[0], field(TokenizeRequest.TEXT_FIELD_NUMBER, invalidUtf8(r)))
          : TokenizeRequest.newBuilder().setText(randomText(r, 300)).setAddSpecialTokens(r.nextBoolean()).build()
              .toByteArray()), null);
      default -> new Case("detokenize", DETOKENIZE, List.of(DetokenizeRequest.newBuilder()
          .addAllIds(randomIds(r).getIdsList()).setSkipSpecialTokens(r.nextBoolean()).build().toByteArray()), null);
    };
  }

  /** A valid request (short text, greedy, few tokens). */
  private static GenerateRequest.Builder base(SplittableRandom r) {
    return GenerateRequest.newBuilder().setText("fuzz " + r.nextInt(1000)).setMaxTokens(r.nextInt(1, 5))
        .setSampling(SamplingParams.newBuilder().setTemperature(0f));
  }

  private static GenerateRequest extreme(SplittableRandom r, String text) {
    GenerateRequest.Builder b = GenerateRequest.newBuilder().setText(text);
    if (r.nextBoolean()) {
      b.setMaxTokens(extremeInt(r));
    } else {
      b.setMaxTokens(r.nextInt(0, 5));
    }
    if (r.nextInt(3) == 0) {
      b.setLogprobs(extremeInt(r));
    }
    if (r.nextInt(4) == 0) {
      b.addStop(r.nextBoolean() ? "" : randomText(r, 5));
    }
    if (r.nextInt(4) == 0) {
      b.setModel(randomText(r, 10));
    }
    if (r.nextInt(5) == 0) {
      b.setChat(true);
    }
    if (r.nextInt(5) == 0) {
      b.addResumeTokenIds(extremeInt(r));
    }
    b.setIgnoreEos(r.nextBoolean()).setRequestId(randomText(r, 20));
    SamplingParams.Builder s = SamplingParams.newBuilder();
    if (r.nextBoolean()) {
      s.setTemperature(extremeFloat(r));
    }
    if (r.nextBoolean()) {
      s.setTopK(extremeInt(r));
    }
    if (r.nextBoolean()) {
      s.setTopP(extremeFloat(r));
    }
    if (r.nextBoolean()) {
      s.setMinP(extremeFloat(r));
    }
    if (r.nextBoolean()) {
      s.setRepetitionPenalty(extremeFloat(r));
    }
    if (r.nextBoolean()) {
      s.setSeed(r.nextLong());
    }
    return b.setSampling(s).build();
  }

  private static int extremeInt(SplittableRandom r) {
    int[] edges = {0, 1, -1, Integer.MAX_VALUE, Integer.MIN_VALUE, MAX_TOKENS, MAX_TOKENS + 1, 20, 21, 4095, 4096};
    return r.nextBoolean() ? edges[r.nextInt(edges.length)] : r.nextInt();
  }

  private static float extremeFloat(SplittableRandom r) {
    float[] edges = {0f, -0f, 1f, -1f, 0.5f, Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY,
        Float.MAX_VALUE, Float.MIN_VALUE, -Float.MAX_VALUE, 100f, 100.01f, 1e-30f};
    return r.nextBoolean() ? edges[r.nextInt(edges.length)] : Float.intBitsToFloat(r.nextInt());
  }

  private static float nonFinite(SplittableRandom r) {
    float[] values = {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.intBitsToFloat(0x7fc12345)};
    return values[r.nextInt(values.length)];
  }

  private static TokenIds randomIds(SplittableRandom r) {
    TokenIds.Builder ids = TokenIds.newBuilder();
    int n = r.nextInt(0, 40);
    for (int i = 0; i < n; i++) {
      ids.addIds(r.nextInt(3) == 0 ? extremeInt(r) : r.nextInt(0, 300));
    }
    return ids.build();
  }

  /** Any code points: controls, combining marks, private use, astral planes (never lone surrogates). */
  private static String randomText(SplittableRandom r, int maxLength) {
    StringBuilder s = new StringBuilder();
    int n = r.nextInt(0, maxLength + 1);
    for (int i = 0; i < n; i++) {
      int cp = switch (r.nextInt(4)) {
        case 0 -> r.nextInt(0, 0x80);
        case 1 -> r.nextInt(0x80, 0x800);
        case 2 -> r.nextInt(0x800, 0x10000);
        default -> r.nextInt(0x10000, 0x110000);
      };
      if (Character.isSurrogate((char) cp) && cp < 0x10000) {
        cp = '?';
      }
      s.appendCodePoint(cp);
    }
    return s.toString();
  }

  /** Random bytes with at least one that never occurs in UTF-8. */
  private static byte[] invalidUtf8(SplittableRandom r) {
    byte[] b = randomBytes(r, r.nextInt(1, 64));
    b[r.nextInt(b.length)] = (byte) (r.nextBoolean() ? 0xFF : 0xC0);
    return b;
  }

  private static byte[] randomBytes(SplittableRandom r, int n) {
    byte[] b = new byte[n];
    r.nextBytes(b);
    return b;
  }

  /** One length-delimited field {@code number} with {@code value}, bypassing the builders' UTF-8 check. */
  private static byte[] field(int number, byte[] value) {
    return write(out -> out.writeByteArray(number, value));
  }

  /** Fields no version of the API defines, of every wire type. */
  private static byte[] unknownFields(SplittableRandom r) {
    return write(out -> {
      int n = r.nextInt(1, 6);
      for (int i = 0; i < n; i++) {
        int number = r.nextInt(100, 1 << 20);
        switch (r.nextInt(4)) {
          case 0 -> out.writeUInt64(number, r.nextLong());
          case 1 -> out.writeFixed32(number, r.nextInt());
          case 2 -> out.writeFixed64(number, r.nextLong());
          default -> out.writeByteArray(number, randomBytes(r, r.nextInt(0, 50)));
        }
      }
    });
  }

  interface Writes {
    void to(CodedOutputStream out) throws IOException;
  }

  private static byte[] write(Writes w) {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    CodedOutputStream out = CodedOutputStream.newInstance(bytes);
    try {
      w.to(out);
      out.flush();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return bytes.toByteArray();
  }

  private static byte[] concat(byte[] a, byte[] b) {
    byte[] out = java.util.Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }

  // ---- the raw calls ----

  private static MethodDescriptor<byte[], byte[]> raw(MethodDescriptor<?, ?> method) {
    return method.toBuilder(Bytes.INSTANCE, Bytes.INSTANCE).build();
  }

  /** The same method as the client sees it when it may send many messages (the server decides). */
  private static MethodDescriptor<byte[], byte[]> asClientStreaming(MethodDescriptor<byte[], byte[]> method) {
    return method.toBuilder().setType(MethodDescriptor.MethodType.BIDI_STREAMING).build();
  }

  /** Sends {@code c}'s messages as they are and waits for the call's end. */
  private static Outcome call(Case c, int index) throws Exception {
    CompletableFuture<Status> end = new CompletableFuture<>();
    AtomicInteger responses = new AtomicInteger();
    ClientCall<byte[], byte[]> call =
        channel.newCall(c.method(), CallOptions.DEFAULT.withDeadlineAfter(20, TimeUnit.SECONDS));
    call.start(new ClientCall.Listener<>() {
      @Override
      public void onMessage(byte[] message) {
        responses.incrementAndGet();
      }

      @Override
      public void onClose(Status status, Metadata trailers) {
        end.complete(status);
      }
    }, new Metadata());
    call.request(Integer.MAX_VALUE);
    for (byte[] m : c.messages()) {
      call.sendMessage(m);
    }
    call.halfClose();
    return new Outcome(c, index, end.get(30, TimeUnit.SECONDS), responses.get());
  }

  private enum Bytes implements MethodDescriptor.Marshaller<byte[]> {
    INSTANCE;

    @Override
    public InputStream stream(byte[] value) {
      return new ByteArrayInputStream(value);
    }

    @Override
    public byte[] parse(InputStream stream) {
      try {
        return stream.readAllBytes();
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
  }
}
