package io.moecluster.deploy.cluster;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.reflection.v1.ServerReflectionGrpc;
import io.grpc.reflection.v1.ServerReflectionRequest;
import io.grpc.reflection.v1.ServerReflectionResponse;
import io.grpc.reflection.v1.ServiceResponse;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import io.moecluster.proto.v1.ExpertPlacement;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.GetModelInfoRequest;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.ModelInfo;
import io.moecluster.proto.v1.TokenIds;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Timeout;

/**
 * End to end: the packaged distribution's {@code moe local-cluster} with two expert JVMs (three
 * JVMs in all) serving a SMALL checkpoint; its streams must carry exactly the tokens of the
 * single-process {@link LocalGenerator}, its experts must be spread over both expert nodes, a
 * cancelled or timed-out request must free its slot, bad input must be INVALID_ARGUMENT, and
 * SIGTERM must leave no process behind.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
@Timeout(value = 4, unit = TimeUnit.MINUTES)
class LocalClusterIT {
  /** Requests the cluster runs at once; also the slot limit, so a 17th is refused. */
  private static final int SLOTS = 16;

  private Path work;
  private Path model;
  private Process cluster;
  private final List<ProcessHandle> nodes = new ArrayList<>();
  private final List<String> log = new CopyOnWriteArrayList<>();
  private ManagedChannel channel;
  private int basePort;
  private int metricsBasePort;
  private ModelConfig config;

  @BeforeAll
  void startCluster() throws Exception {
    Path dist = Path.of(System.getProperty("moe.dist.dir", "target/moe-dist-missing"));
    assertTrue(Files.isExecutable(dist.resolve("bin/moe")), "no distribution at " + dist + "; run mvn package first");
    work = Files.createTempDirectory("moe-it");
    model = work.resolve("small");
    config = CheckpointWriter.write(CheckpointSpec.of(Preset.SMALL, DType.BF16, 7), model);

    basePort = freeConsecutivePorts(3);
    int grpcPort = freePort();
    metricsBasePort = freeConsecutivePorts(3);
    ProcessBuilder pb = new ProcessBuilder(dist.resolve("bin/moe").toString(), "local-cluster",
        "--model", model.toString(), "--expert-nodes", "2",
        "--grpc-port", Integer.toString(grpcPort), "--base-port", Integer.toString(basePort),
        "--metrics-base-port", Integer.toString(metricsBasePort),
        "--start-timeout", "150", "--stop-grace", "30",
        // If this JVM dies (a build timeout), the cluster goes with it.
        "--parent-pid", Long.toString(ProcessHandle.current().pid()),
        // One limit everywhere: 16 running, none waiting, so the 17th request is refused.
        "--conf", "moe.gateway.max-running=" + SLOTS,
        "--conf", "moe.gateway.max-queued=0",
        "--conf", "moe.router.max-running-sequences=" + SLOTS,
        "--conf", "moe.router.max-waiting=0",
        // Nothing runs when the test stops the cluster; no need to wait for stragglers.
        "--conf", "moe.gateway.drain-timeout=5s",
        // Two JVMs share each of the 2 cores: one compute thread per node.
        "--conf", "moe.expert.compute-threads=1",
        "--conf", "moe.router.compute-threads=1")
        .redirectErrorStream(true);
    pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
    pb.environment().put("MOE_JAVA_OPTS", "-Xmx512m");
    cluster = pb.start();
    CountDownLatch serving = new CountDownLatch(1);
    Path logFile = Path.of("target", "local-cluster-it.log");
    Thread.ofPlatform().daemon().start(() -> pump(logFile, serving));
    grpcTarget = "127.0.0.1:" + grpcPort;
    channel = Gateways.channel(new HostPort("127.0.0.1", grpcPort));

    // The reference tokens, computed while the cluster starts.
    references = referenceResults();

    while (!serving.await(1, TimeUnit.SECONDS)) {
      if (!cluster.isAlive()) {
        fail("moe local-cluster exited with " + cluster.exitValue() + " before serving:\n" + tail());
      }
    }
    nodes.addAll(cluster.toHandle().children().toList());
    assertEquals(3, nodes.size(), "expected 3 node JVMs under local-cluster: " + nodes);
  }

  private void pump(Path logFile, CountDownLatch serving) {
    try (BufferedReader in = new BufferedReader(new InputStreamReader(cluster.getInputStream(), StandardCharsets.UTF_8));
        PrintStream file = new PrintStream(Files.newOutputStream(logFile), true, StandardCharsets.UTF_8)) {
      String line;
      while ((line = in.readLine()) != null) {
        log.add(line);
        file.println(line);
        if (line.startsWith("moe: local cluster serving")) {
          serving.countDown();
        }
      }
    } catch (IOException e) {
      // The process is gone.
    }
  }

  private String tail() {
    List<String> lines = new ArrayList<>(log);
    return String.join("\n", lines.subList(Math.max(0, lines.size() - 40), lines.size()));
  }

  @AfterAll
  void cleanUp() throws Exception {
    if (channel != null) {
      Gateways.close(channel);
    }
    if (cluster != null && cluster.isAlive()) {
      cluster.destroy();
      if (!cluster.waitFor(60, TimeUnit.SECONDS)) {
        cluster.destroyForcibly();
      }
    }
    for (ProcessHandle node : nodes) {
      if (node.isAlive()) {
        node.destroyForcibly();
      }
    }
    if (cluster != null) {
      cluster.toHandle().descendants().forEach(ProcessHandle::destroyForcibly);
    }
    if (work != null) {
      try (var files = Files.walk(work)) {
        files.sorted((a, b) -> b.compareTo(a)).forEach(p -> p.toFile().delete());
      }
    }
  }

  // ---- the requests and their reference tokens

  private List<GenerationRequest> requests;
  private List<GenerationResult> references;
  private final Set<Integer> sentAsText = Set.of(1, 6, 11);
  private List<String> texts;

  private List<GenerationResult> referenceResults() {
    try (LocalGenerator reference = LocalGenerator.open(model, 2)) {
      requests = new ArrayList<>();
      texts = new ArrayList<>();
      for (int i = 0; i < SLOTS; i++) {
        String text = "Request " + i + ": the quick brown fox " + "jumps over the lazy dog ".repeat(1 + i % 4);
        texts.add(text);
        int[] prompt = reference.tokenizer().encode(text);
        SamplingParams sampling = i % 2 == 0
            ? new SamplingParams(0f, 0, 1f, 0f, 1f, 0)
            : new SamplingParams(0.6f + 0.1f * (i % 4), i % 3 == 0 ? 40 : 0, 0.9f, i % 5 == 0 ? 0.05f : 0f,
                i % 3 == 1 ? 1.1f : 1f, 1000 + i);
        int maxTokens = 6 + (i * 5) % 19;
        boolean ignoreEos = i % 4 != 3;
        List<String> stop = i == 5 ? List.of("e") : List.of();
        requests.add(new GenerationRequest(prompt, sampling, maxTokens, stop, ignoreEos));
      }
      List<GenerationResult> out = new ArrayList<>();
      for (GenerationRequest r : requests) {
        out.add(reference.generate(r, e -> {}));
      }
      return out;
    }
  }

  private GenerateRequest toProto(int i) {
    GenerationRequest r = requests.get(i);
    SamplingParams s = r.sampling();
    GenerateRequest.Builder b = GenerateRequest.newBuilder()
        .setSampling(io.moecluster.proto.v1.SamplingParams.newBuilder().setTemperature(s.temperature())
            .setTopK(s.topK()).setTopP(s.topP()).setMinP(s.minP()).setRepetitionPenalty(s.repetitionPenalty())
            .setSeed(s.seed()))
        .setMaxTokens(r.maxTokens())
        .addAllStop(r.stopSequences())
        .setIgnoreEos(r.ignoreEos())
        .setRequestId("it-" + i);
    if (sentAsText.contains(i)) {
      b.setText(texts.get(i)); // tokenized by the gateway: the same ids as the reference's encode
    } else {
      b.setTokenIds(TokenIds.newBuilder().addAllIds(Arrays.stream(r.promptIds()).boxed().toList()));
    }
    return b.build();
  }

  /** What one stream delivered. */
  private record Streamed(int[] ids, String text, io.moecluster.proto.v1.FinishReason finish) {}

  private static CompletableFuture<Streamed> stream(InferenceGrpc.InferenceStub stub, GenerateRequest request) {
    CompletableFuture<Streamed> result = new CompletableFuture<>();
    stub.generate(request, new StreamObserver<>() {
      final List<Integer> ids = new ArrayList<>();
      final StringBuilder text = new StringBuilder();
      io.moecluster.proto.v1.FinishReason finish = io.moecluster.proto.v1.FinishReason.FINISH_REASON_UNSPECIFIED;

      @Override
      public void onNext(GenerateResponse r) {
        r.getTokensList().forEach(t -> ids.add(t.getId()));
        text.append(r.getText());
        if (r.getFinishReason() != io.moecluster.proto.v1.FinishReason.FINISH_REASON_UNSPECIFIED) {
          finish = r.getFinishReason();
        }
      }

      @Override
      public void onError(Throwable t) {
        result.completeExceptionally(t);
      }

      @Override
      public void onCompleted() {
        result.complete(new Streamed(ids.stream().mapToInt(Integer::intValue).toArray(), text.toString(), finish));
      }
    });
    return result;
  }

  @Test
  @Order(1)
  void healthAndReflectionAnswer() throws Exception {
    assertEquals(ServingStatus.SERVING, HealthGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
        .check(HealthCheckRequest.getDefaultInstance()).getStatus());
    CompletableFuture<List<String>> services = new CompletableFuture<>();
    StreamObserver<ServerReflectionRequest> requests = ServerReflectionGrpc.newStub(channel)
        .withDeadlineAfter(10, TimeUnit.SECONDS).serverReflectionInfo(new StreamObserver<>() {
          @Override
          public void onNext(ServerReflectionResponse r) {
            services.complete(r.getListServicesResponse().getServiceList().stream().map(ServiceResponse::getName).toList());
          }

          @Override
          public void onError(Throwable t) {
            services.completeExceptionally(t);
          }

          @Override
          public void onCompleted() {}
        });
    requests.onNext(ServerReflectionRequest.newBuilder().setListServices("").build());
    requests.onCompleted();
    List<String> names = services.get(10, TimeUnit.SECONDS);
    assertTrue(names.contains("moecluster.v1.Inference"), names.toString());
    assertTrue(names.contains("grpc.health.v1.Health"), names.toString());
  }

  @Test
  @Order(2)
  void expertsAreSpreadOverBothExpertNodes() throws Exception {
    // SERVING means placed; give late-registering regions a moment to show up anyway.
    ModelInfo info = null;
    Map<String, List<ExpertPlacement>> byNode = Map.of();
    for (int attempt = 0; attempt < 30; attempt++) {
      info = InferenceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
          .getModelInfo(GetModelInfoRequest.getDefaultInstance());
      byNode = Placement.byNode(info);
      if (byNode.size() == 2 && info.getPlacementCount() == config.numLayers() * config.numExperts()) {
        break;
      }
      Thread.sleep(500);
    }
    assertNotNull(info);
    assertEquals(Set.of("pekko://moe@127.0.0.1:" + (basePort + 1), "pekko://moe@127.0.0.1:" + (basePort + 2)),
        byNode.keySet(), "placement: " + info.getPlacementList());
    Set<String> experts = new HashSet<>();
    for (ExpertPlacement p : info.getPlacementList()) {
      assertTrue(experts.add(p.getLayer() + "/" + p.getExpert() + "#" + p.getReplica()), "duplicate " + p);
    }
    assertEquals(config.numLayers() * config.numExperts(), experts.size());
    // Shards are columns of the model (expert e of every layer): each node holds half of every
    // layer's experts, so no layer waits on one node more than on the other.
    for (var e : byNode.entrySet()) {
      Map<Integer, Integer> perLayer = new TreeMap<>();
      e.getValue().forEach(p -> perLayer.merge(p.getLayer(), 1, Integer::sum));
      for (int layer = 0; layer < config.numLayers(); layer++) {
        assertEquals(config.numExperts() / 2, perLayer.getOrDefault(layer, 0),
            e.getKey() + " per layer: " + perLayer);
      }
    }
  }

  @Test
  @Order(3)
  void concurrentStreamsCarryTheSingleProcessTokens() throws Exception {
    InferenceGrpc.InferenceStub stub = InferenceGrpc.newStub(channel).withDeadlineAfter(150, TimeUnit.SECONDS);
    List<CompletableFuture<Streamed>> streams = new ArrayList<>();
    for (int i = 0; i < SLOTS; i++) {
      streams.add(stream(stub, toProto(i)));
    }
    for (int i = 0; i < SLOTS; i++) {
      Streamed s = streams.get(i).get(150, TimeUnit.SECONDS);
      GenerationResult expected = references.get(i);
      assertArrayEquals(expected.generatedIds(), s.ids(), "request " + i + " (" + requests.get(i).sampling() + ")");
      assertEquals(expected.text(), s.text(), "request " + i);
      assertEquals(expected.finishReason().name(), switch (s.finish()) {
        case FINISH_REASON_STOP -> "EOS";
        case FINISH_REASON_STOP_SEQUENCE -> "STOP_SEQUENCE";
        case FINISH_REASON_LENGTH -> "LENGTH";
        case FINISH_REASON_CANCELLED -> "CANCELLED";
        default -> "UNSPECIFIED";
      }, "request " + i);
    }
  }

  // ---- slots: cancellation and deadlines free them

  /** A long stream held open until cancelled. */
  private static final class Held implements ClientResponseObserver<GenerateRequest, GenerateResponse> {
    final CompletableFuture<Void> firstToken = new CompletableFuture<>();
    final CompletableFuture<Status> ended = new CompletableFuture<>();
    volatile ClientCallStreamObserver<GenerateRequest> call;

    @Override
    public void beforeStart(ClientCallStreamObserver<GenerateRequest> requestStream) {
      call = requestStream;
    }

    @Override
    public void onNext(GenerateResponse r) {
      if (r.getTokensCount() > 0) {
        firstToken.complete(null);
      }
    }

    @Override
    public void onError(Throwable t) {
      firstToken.completeExceptionally(t);
      ended.complete(Status.fromThrowable(t));
    }

    @Override
    public void onCompleted() {
      firstToken.completeExceptionally(new IllegalStateException("a held stream completed"));
      ended.complete(Status.OK);
    }

    void cancel() {
      call.cancel("test cancels", null);
    }
  }

  private GenerateRequest longRequest(int i) {
    return GenerateRequest.newBuilder()
        .setTokenIds(TokenIds.newBuilder().addAllIds(List.of(1 + i, 20 + i, 300 + i)))
        .setSampling(io.moecluster.proto.v1.SamplingParams.newBuilder().setTemperature(0f).setSeed(i))
        .setMaxTokens(3000)
        .setIgnoreEos(true)
        .setRequestId("hold-" + i)
        .build();
  }

  private Held hold(InferenceGrpc.InferenceStub stub, int i) {
    Held h = new Held();
    stub.generate(longRequest(i), h);
    return h;
  }

  /**
   * Starts a long request with a deadline of {@code deadlineSeconds}: the held stream once it
   * streams its first token, or null if the cluster refuses it with RESOURCE_EXHAUSTED.
   */
  private Held admit(int i, int deadlineSeconds) throws Exception {
    Held h = hold(InferenceGrpc.newStub(channel).withDeadlineAfter(deadlineSeconds, TimeUnit.SECONDS), i);
    try {
      h.firstToken.get(deadlineSeconds, TimeUnit.SECONDS);
      return h;
    } catch (java.util.concurrent.ExecutionException e) {
      Status status = Status.fromThrowable(e.getCause());
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, status.getCode(), "a full cluster refuses with RESOURCE_EXHAUSTED");
      return null;
    }
  }

  /** Whether a new request is admitted right now; it is cancelled again at once. */
  private boolean admitted(int i) throws Exception {
    Held h = admit(i, 60);
    if (h != null) {
      h.cancel();
    }
    return h != null;
  }

  /** Polls for up to 5 s, as the slot is freed asynchronously (but promptly); keeps the stream. */
  private Held admitSoon(int i, int deadlineSeconds, String after) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
    while (true) {
      Held h = admit(i, deadlineSeconds);
      if (h != null) {
        return h;
      }
      if (System.nanoTime() > deadline) {
        fail("no slot was free 5 s after " + after);
      }
      Thread.sleep(100);
    }
  }

  @Test
  @Order(4)
  void cancellationAndDeadlinesFreeTheirSlots() throws Exception {
    InferenceGrpc.InferenceStub stub = InferenceGrpc.newStub(channel).withDeadlineAfter(120, TimeUnit.SECONDS);
    List<Held> held = new ArrayList<>();
    try {
      for (int i = 0; i < SLOTS; i++) {
        held.add(hold(stub, i));
      }
      for (Held h : held) {
        h.firstToken.get(90, TimeUnit.SECONDS);
      }
      assertFalse(admitted(100), "all " + SLOTS + " slots are taken: a 17th request must be refused");

      // Cancel one mid-stream: its slot is free again, and taken by a request with a short
      // deadline that runs out mid-stream.
      held.get(0).cancel();
      assertEquals(Status.Code.CANCELLED, held.get(0).ended.get(10, TimeUnit.SECONDS).getCode());
      Held timed = admitSoon(101, 8, "a cancellation");
      held.add(timed);
      assertFalse(admitted(102), "full again");
      assertEquals(Status.Code.DEADLINE_EXCEEDED, timed.ended.get(15, TimeUnit.SECONDS).getCode());
      held.add(admitSoon(103, 60, "a deadline ran out"));
    } finally {
      held.forEach(Held::cancel);
    }
  }

  // ---- bad input

  @Test
  @Order(5)
  void badInputIsInvalidArgument() {
    var base = GenerateRequest.newBuilder().setMaxTokens(4)
        .setTokenIds(TokenIds.newBuilder().addIds(1).addIds(2));
    var sampling = io.moecluster.proto.v1.SamplingParams.newBuilder();
    int vocab = config.vocabSize();
    Map<String, GenerateRequest> bad = new java.util.LinkedHashMap<>();
    bad.put("no prompt", GenerateRequest.newBuilder().setMaxTokens(4).build());
    bad.put("empty token ids", GenerateRequest.newBuilder().setTokenIds(TokenIds.getDefaultInstance()).build());
    bad.put("token id = vocab size", base.clone().setTokenIds(TokenIds.newBuilder().addIds(vocab)).build());
    bad.put("negative token id", base.clone().setTokenIds(TokenIds.newBuilder().addIds(-1)).build());
    bad.put("chat with token ids", base.clone().setChat(true).build());
    bad.put("negative temperature", base.clone().setSampling(sampling.clone().setTemperature(-1)).build());
    bad.put("top_p 0", base.clone().setSampling(sampling.clone().setTopP(0)).build());
    bad.put("top_p 1.5", base.clone().setSampling(sampling.clone().setTopP(1.5f)).build());
    bad.put("negative top_k", base.clone().setSampling(sampling.clone().setTopK(-1)).build());
    bad.put("min_p 2", base.clone().setSampling(sampling.clone().setMinP(2)).build());
    bad.put("repetition_penalty 0", base.clone().setSampling(sampling.clone().setRepetitionPenalty(0)).build());
    bad.put("prompt longer than the context", base.clone().setTokenIds(TokenIds.newBuilder()
        .addAllIds(java.util.Collections.nCopies(config.contextLength() + 1, 5))).build());
    bad.put("resume id = vocab size", base.clone().addResumeTokenIds(vocab).build());
    bad.put("more resume ids than max_tokens", base.clone().addAllResumeTokenIds(List.of(3, 4, 5, 6, 7)).build());
    InferenceGrpc.InferenceBlockingStub stub = InferenceGrpc.newBlockingStub(channel);
    List<String> wrong = new ArrayList<>();
    for (var e : bad.entrySet()) {
      try {
        Iterator<GenerateResponse> it = stub.withDeadlineAfter(20, TimeUnit.SECONDS).generate(e.getValue());
        while (it.hasNext()) {
          it.next();
        }
        wrong.add(e.getKey() + ": accepted");
      } catch (StatusRuntimeException x) {
        if (x.getStatus().getCode() != Status.Code.INVALID_ARGUMENT) {
          wrong.add(e.getKey() + ": " + x.getStatus());
        } else if (x.getStatus().getDescription() == null || x.getStatus().getDescription().isBlank()) {
          wrong.add(e.getKey() + ": INVALID_ARGUMENT without a description");
        }
      }
    }
    assertTrue(wrong.isEmpty(), String.join("\n", wrong));
    // And the cluster still serves.
    assertTrue(stub.withDeadlineAfter(60, TimeUnit.SECONDS).generate(base.clone().build()).hasNext());
  }

  // ---- moe client generate prints what moe generate prints

  private String grpcTarget;

  private String runMoe(String... args) throws Exception {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("moe.dist.dir")).resolve("bin/moe").toString());
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD);
    pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
    Process p = pb.start();
    try {
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertTrue(p.waitFor(90, TimeUnit.SECONDS), "moe " + String.join(" ", args) + " did not finish");
      assertEquals(0, p.exitValue(), "moe " + String.join(" ", args) + ": " + out);
      return out;
    } finally {
      p.destroyForcibly();
    }
  }

  @Test
  @Order(6)
  void clientGeneratePrintsWhatGeneratePrints() throws Exception {
    var json = new com.fasterxml.jackson.databind.ObjectMapper();
    for (List<String> flags : List.of(
        List.of("--prompt", "We hold these truths", "--max-tokens", "10", "--seed", "3", "--json"),
        List.of("--prompt-ids", "5,77,300,12", "--max-tokens", "8", "--temperature", "0", "--json"))) {
      List<String> client = new ArrayList<>(List.of("client", "generate", "--target", grpcTarget));
      client.addAll(flags);
      List<String> local = new ArrayList<>(List.of("generate", "--model", model.toString(), "--threads", "1"));
      local.addAll(flags);
      var remote = (com.fasterxml.jackson.databind.node.ObjectNode) json.readTree(runMoe(client.toArray(String[]::new)));
      var here = (com.fasterxml.jackson.databind.node.ObjectNode) json.readTree(runMoe(local.toArray(String[]::new)));
      for (var o : List.of(remote, here)) {
        assertTrue(o.has("prefill_tokens_per_second") && o.has("decode_tokens_per_second"), o.toString());
        o.remove(List.of("prefill_tokens_per_second", "decode_tokens_per_second"));
      }
      assertEquals(here, remote, String.join(" ", flags));
    }
    // Text mode: the same text on stdout.
    List<String> flags = List.of("--prompt", "Once upon a time", "--max-tokens", "12", "--seed", "9");
    List<String> client = new ArrayList<>(List.of("client", "generate", "--target", grpcTarget));
    client.addAll(flags);
    List<String> local = new ArrayList<>(List.of("generate", "--model", model.toString(), "--threads", "1"));
    local.addAll(flags);
    assertEquals(runMoe(local.toArray(String[]::new)), runMoe(client.toArray(String[]::new)));
  }

  // ---- metrics: every node JVM answers /metrics

  @Test
  @Order(7)
  void everyNodeJvmServesMetrics() throws Exception {
    assertTrue(log.stream().anyMatch(l -> l.startsWith("moe: metrics on gateway=http://127.0.0.1:" + metricsBasePort
        + "/metrics")), "local-cluster prints the metrics endpoints:\n" + tail());
    java.net.http.HttpClient http = java.net.http.HttpClient.newHttpClient();
    String[] names = {"gateway", "expert-1", "expert-2"};
    for (int i = 0; i < 3; i++) {
      var response = http.send(java.net.http.HttpRequest.newBuilder(
              java.net.URI.create("http://127.0.0.1:" + (metricsBasePort + i) + "/metrics"))
              .timeout(java.time.Duration.ofSeconds(10)).build(),
          java.net.http.HttpResponse.BodyHandlers.ofString());
      assertEquals(200, response.statusCode(), names[i]);
      String body = response.body();
      assertTrue(body.contains("# TYPE jvm_memory_used_bytes gauge"), names[i]);
      assertTrue(body.contains("# TYPE moe_cluster_members gauge"), names[i]);
      if (i == 0) {
        // The streams of the tests before went through this gateway and router.
        assertTrue(body.contains("# TYPE moe_time_to_first_token_seconds histogram"), body);
        assertTrue(body.contains("moe_tokens_routed_total{"), body);
        assertFalse(body.contains("moe_expert_cache_hits_total{"), "the gateway JVM hosts no experts");
        // The expert requests of the streams went over the expert nodes' data channels.
        var dataCalls = java.util.regex.Pattern.compile("moe_expert_calls_total\\{path=\"data-channel\"} ([0-9.eE+]+)")
            .matcher(body);
        assertTrue(dataCalls.find() && Double.parseDouble(dataCalls.group(1)) > 0, body);
        // Each expert node's cache holds the whole model (the default budget), so once the nodes
        // said their experts stay warm the router stopped predicting and hinting their layers.
        var skipped = java.util.regex.Pattern.compile("moe_prefetch_skipped_total\\{layer=\"1\"} ([0-9.eE+]+)")
            .matcher(body);
        assertTrue(skipped.find() && Double.parseDouble(skipped.group(1)) > 0, body);
      } else {
        String self = "node=\"pekko://moe@127.0.0.1:" + (basePort + i) + "\"";
        assertTrue(body.contains("moe_expert_cache_hits_total{" + self + "}"), names[i] + ":\n" + body);
        assertTrue(body.contains("moe_sharding_entities{" + self + "}"), names[i]);
        assertFalse(body.contains("# TYPE moe_time_to_first_token_seconds"), names[i] + " has no gateway");
      }
    }
  }

  // ---- SIGTERM: everything stops

  @Test
  @Order(99)
  void sigtermStopsEveryNode() throws Exception {
    Gateways.close(channel);
    channel = null;
    cluster.destroy(); // SIGTERM
    assertTrue(cluster.waitFor(100, TimeUnit.SECONDS), "local-cluster still running 100 s after SIGTERM:\n" + tail());
    for (ProcessHandle node : nodes) {
      node.onExit().get(10, TimeUnit.SECONDS);
      assertFalse(node.isAlive(), "node " + node.pid() + " outlived local-cluster");
    }
    List<String> killed = log.stream().filter(l -> l.contains("killing it")).collect(Collectors.toList());
    assertTrue(killed.isEmpty(), "every node should stop on SIGTERM, without SIGKILL: " + killed);
  }

  // ---- ports

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  private static int freeConsecutivePorts(int count) throws IOException {
    java.util.Random random = new java.util.Random();
    for (int attempt = 0; attempt < 50; attempt++) {
      // Below Linux's ephemeral range (32768 and up), where the nodes' own port-0 sockets (data
      // channel, outgoing connections) could take one of these before its node binds it.
      int base = 20000 + random.nextInt(12000);
      boolean free = true;
      for (int p = base; p < base + count && free; p++) {
        try (ServerSocket s = new ServerSocket(p, 1, InetAddress.getLoopbackAddress())) {
          s.setReuseAddress(true);
        } catch (IOException e) {
          free = false;
        }
      }
      if (free) {
        return base;
      }
    }
    throw new IOException("no " + count + " consecutive free ports");
  }
}
