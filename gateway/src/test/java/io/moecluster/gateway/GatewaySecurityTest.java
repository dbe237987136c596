package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.reflection.v1.ServerReflectionGrpc;
import io.grpc.reflection.v1.ServerReflectionRequest;
import io.grpc.reflection.v1.ServerReflectionResponse;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import io.moecluster.gateway.security.DevCertificates;
import io.moecluster.gateway.security.GatewaySecurity;
import io.moecluster.gateway.security.PemFiles;
import io.moecluster.gateway.security.RefusedCalls;
import io.moecluster.proto.v1.CompleteResponse;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.SamplingParams;
import java.io.IOException;
import java.nio.file.Path;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * TLS, mutual TLS, API keys and the per-client limit of a real Netty gateway (in front of a {@link
 * TestRouter}), with certificates generated for the test: a call without the key is refused, with
 * it it works; a plaintext client on the TLS port fails cleanly and the server goes on; mutual TLS
 * refuses a client without a certificate of the trusted CA.
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class GatewaySecurityTest {
  private static final String KEY = "k-3f9a1c0e7b";
  private static final String OTHER_KEY = "k-other-5d21";

  @TempDir static Path certs;
  @TempDir static Path otherCerts;
  private static ActorSystem<Void> system;
  private static TestRouter router;
  private static GatewayServer tls;
  private static GatewayServer mutual;

  @BeforeAll
  static void start() throws IOException {
    DevCertificates.writeAll(certs, List.of("127.0.0.1", "localhost"), "pw".toCharArray(), Duration.ofDays(1));
    DevCertificates.writeAll(otherCerts, List.of("127.0.0.1"), "pw".toCharArray(), Duration.ofDays(1));
    system = TestClusters.start("security", List.of("gateway"));
    router = new TestRouter();
    system.systemActorOf(router.behavior(), "test-router", Props.empty());
    tls = start(
        """
        tls { cert-chain = "%1$s/server.pem", private-key = "%1$s/server-key.pem" }
        api-keys = ["%2$s", "%3$s"]
        max-streams-per-client = 2
        """.formatted(certs, KEY, OTHER_KEY));
    mutual = start(
        """
        tls { cert-chain = "%1$s/server.pem", private-key = "%1$s/server-key.pem", client-ca = "%1$s/ca.pem" }
        """.formatted(certs));
    GatewayFixture.await("SERVING", Duration.ofSeconds(10), () -> tls.isServing() && mutual.isServing());
  }

  private static GatewayServer start(String overrides) {
    var config = ConfigFactory.parseString("moe.gateway {" + overrides + "}").withFallback(ConfigFactory.load());
    GatewaySecurity security = GatewaySecurity.fromConfig(config, Map.of());
    return GatewayServer.start(system, GatewayFixture.settings(overrides), security, TestModel.tiny());
  }

  @AfterAll
  static void stop() {
    for (GatewayServer g : new GatewayServer[] {tls, mutual}) {
      if (g != null) {
        g.shutdownGracefully(Duration.ofSeconds(1));
      }
    }
    TestClusters.stop(system);
  }

  private static ManagedChannel channel(GatewayServer server, ChannelCredentials credentials) {
    return Grpc.newChannelBuilderForAddress("127.0.0.1", server.port(), credentials).build();
  }

  private static ChannelCredentials trusting(Path dir) throws IOException {
    return TlsChannelCredentials.newBuilder().trustManager(dir.resolve("ca.pem").toFile()).build();
  }

  private static ChannelCredentials withClientCert(Path dir, Path trust) throws IOException {
    return TlsChannelCredentials.newBuilder()
        .trustManager(trust.resolve("ca.pem").toFile())
        .keyManager(dir.resolve("client.pem").toFile(), dir.resolve("client-key.pem").toFile())
        .build();
  }

  private static InferenceGrpc.InferenceBlockingStub stub(ManagedChannel channel, String key) {
    var stub = InferenceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
    if (key == null) {
      return stub;
    }
    Metadata headers = new Metadata();
    headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + key);
    return stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
  }

  private static GenerateRequest request(int maxTokens) {
    return GenerateRequest.newBuilder()
        .setText("Once upon a time")
        .setMaxTokens(maxTokens)
        .setSampling(SamplingParams.newBuilder().setTemperature(0f))
        .build();
  }

  private static Status.Code code(Runnable call) {
    return assertThrows(StatusRuntimeException.class, call::run).getStatus().getCode();
  }

  private static void close(ManagedChannel channel) throws InterruptedException {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  @Test
  void withoutTheKeyACallIsRefusedWithItItWorks() throws Exception {
    ManagedChannel channel = channel(tls, trusting(certs));
    try {
      double refusedBefore = RefusedCalls.total(RefusedCalls.Reason.UNAUTHENTICATED);
      StatusRuntimeException missing =
          assertThrows(StatusRuntimeException.class, () -> stub(channel, null).complete(request(2)));
      assertEquals(Status.Code.UNAUTHENTICATED, missing.getStatus().getCode());
      assertTrue(missing.getStatus().getDescription().contains("authorization: Bearer"),
          missing.getStatus().getDescription());
      StatusRuntimeException wrong =
          assertThrows(StatusRuntimeException.class, () -> stub(channel, KEY + "x").complete(request(2)));
      assertEquals(Status.Code.UNAUTHENTICATED, wrong.getStatus().getCode());
      assertEquals("the API key is not valid", wrong.getStatus().getDescription());
      assertEquals(2, RefusedCalls.total(RefusedCalls.Reason.UNAUTHENTICATED) - refusedBefore);

      CompleteResponse ok = stub(channel, KEY).complete(request(3));
      assertEquals(List.of(10, 11, 12), ok.getTokenIdsList());
      assertEquals(List.of(10, 11), stub(channel, OTHER_KEY).complete(request(2)).getTokenIdsList());

      // Health stays open for probes; reflection follows the key.
      assertEquals(ServingStatus.SERVING, HealthGrpc.newBlockingStub(channel)
          .withDeadlineAfter(5, TimeUnit.SECONDS).check(HealthCheckRequest.getDefaultInstance()).getStatus());
      assertEquals(Status.Code.UNAUTHENTICATED, reflect(channel, null, new ArrayList<>()).getCode());
      List<String> services = new ArrayList<>();
      assertEquals(Status.Code.OK, reflect(channel, KEY, services).getCode());
      assertTrue(services.contains(InferenceGrpc.SERVICE_NAME), services.toString());
    } finally {
      close(channel);
    }
  }

  /** Lists the services through reflection v1 into {@code services}; the status the call ended with. */
  private static Status reflect(ManagedChannel channel, String key, List<String> services) throws Exception {
    var stub = ServerReflectionGrpc.newStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS);
    if (key != null) {
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + key);
      stub = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
    }
    CompletableFuture<Status> end = new CompletableFuture<>();
    StreamObserver<ServerReflectionRequest> requests = stub.serverReflectionInfo(new StreamObserver<>() {
      @Override
      public void onNext(ServerReflectionResponse value) {
        value.getListServicesResponse().getServiceList().forEach(s -> services.add(s.getName()));
      }

      @Override
      public void onError(Throwable t) {
        end.complete(Status.fromThrowable(t));
      }

      @Override
      public void onCompleted() {
        end.complete(Status.OK);
      }
    });
    requests.onNext(ServerReflectionRequest.newBuilder().setListServices("").build());
    requests.onCompleted();
    return end.get(10, TimeUnit.SECONDS);
  }

  @Test
  void plaintextClientOnTheTlsPortFailsCleanlyAndTheServerGoesOn() throws Exception {
    ManagedChannel plain = channel(tls, InsecureChannelCredentials.create());
    try {
      StatusRuntimeException e =
          assertThrows(StatusRuntimeException.class, () -> stub(plain, KEY).complete(request(2)));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.getStatus().toString());
    } finally {
      close(plain);
    }
    // A client that trusts another CA does not get through either.
    ManagedChannel untrusting = channel(tls, trusting(otherCerts));
    try {
      assertEquals(Status.Code.UNAVAILABLE, code(() -> stub(untrusting, KEY).complete(request(2))));
    } finally {
      close(untrusting);
    }
    ManagedChannel channel = channel(tls, trusting(certs));
    try {
      assertEquals(List.of(10, 11), stub(channel, KEY).complete(request(2)).getTokenIdsList());
    } finally {
      close(channel);
    }
  }

  @Test
  void mutualTlsRefusesAClientWithoutACertificateOfTheTrustedCa() throws Exception {
    ManagedChannel noCert = channel(mutual, trusting(certs));
    ManagedChannel foreignCert = channel(mutual, withClientCert(otherCerts, certs));
    ManagedChannel good = channel(mutual, withClientCert(certs, certs));
    try {
      assertEquals(Status.Code.UNAVAILABLE, code(() -> stub(noCert, null).complete(request(2))));
      assertEquals(Status.Code.UNAVAILABLE, code(() -> stub(foreignCert, null).complete(request(2))));
      assertEquals(List.of(10, 11, 12), stub(good, null).complete(request(3)).getTokenIdsList());
    } finally {
      close(noCert);
      close(foreignCert);
      close(good);
    }
  }

  @Test
  void aClientOverItsLimitOfOpenCallsGetsResourceExhausted() throws Exception {
    router.tokens = 1_000_000;
    router.interval = Duration.ofMillis(20);
    ManagedChannel channel = channel(tls, trusting(certs));
    List<io.grpc.Context.CancellableContext> open = new java.util.ArrayList<>();
    try {
      for (int i = 0; i < 2; i++) {
        var context = io.grpc.Context.current().withCancellation();
        open.add(context);
        context.run(() -> stub(channel, KEY).generate(request(4000)).next());
      }
      double before = RefusedCalls.total(RefusedCalls.Reason.CLIENT_LIMIT);
      StatusRuntimeException e =
          assertThrows(StatusRuntimeException.class, () -> stub(channel, KEY).complete(request(2)));
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().contains("max-streams-per-client"), e.getStatus().getDescription());
      assertEquals(1, RefusedCalls.total(RefusedCalls.Reason.CLIENT_LIMIT) - before);
      // Another key is another client, with its own places.
      router.tokens = 2;
      assertEquals(List.of(10, 11), stub(channel, OTHER_KEY).complete(request(2)).getTokenIdsList());
      // A cancelled stream frees its place.
      open.removeFirst().cancel(null);
      GatewayFixture.await("a place freed", Duration.ofSeconds(5), () -> {
        try {
          return stub(channel, KEY).complete(request(2)).getTokenIdsCount() == 2;
        } catch (StatusRuntimeException busy) {
          return false;
        }
      });
    } finally {
      open.forEach(c -> c.cancel(null));
      router.tokens = 3;
      router.interval = Duration.ofMillis(5);
      close(channel);
    }
  }

  @Test
  void aServerCertificateOutsideItsValidityIsAStartUpError() throws IOException {
    Path file = certs.resolve("server.pem");
    X509Certificate cert = PemFiles.certificates(file, "moe.gateway.tls.cert-chain").getFirst();
    PemFiles.checkValidity(cert, file, Instant.now()); // valid for a day
    IllegalArgumentException expired = assertThrows(IllegalArgumentException.class,
        () -> PemFiles.checkValidity(cert, file, Instant.now().plus(Duration.ofDays(2))));
    assertTrue(expired.getMessage().startsWith("moe.gateway.tls.cert-chain: the certificate in " + file),
        expired.getMessage());
    assertTrue(expired.getMessage().contains("expired on"), expired.getMessage());
    IllegalArgumentException early = assertThrows(IllegalArgumentException.class,
        () -> PemFiles.checkValidity(cert, file, Instant.now().minus(Duration.ofDays(2))));
    assertTrue(early.getMessage().contains("is not valid before"), early.getMessage());
  }

  @Test
  void unusableTlsAndKeySettingsAreStartUpErrorsNamingTheKey() throws IOException {
    java.nio.file.Files.writeString(certs.resolve("rsa.pem"), "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n");
    java.nio.file.Files.writeString(certs.resolve("empty-keys"), "# no keys\n\n");
    Map<String, String> cases = Map.of(
        "tls { cert-chain = \"%1$s/missing.pem\", private-key = \"%1$s/server-key.pem\" }",
        "moe.gateway.tls.cert-chain: cannot read " + certs + "/missing.pem (no such file)",
        "tls { cert-chain = \"%1$s/server.pem\", private-key = \"%1$s/client-key.pem\" }",
        "moe.gateway.tls.private-key: " + certs + "/client-key.pem is not the key of the first certificate",
        "tls { cert-chain = \"%1$s/server.pem\", private-key = \"%1$s/rsa.pem\" }",
        "convert it to PKCS#8",
        "tls { cert-chain = \"%1$s/server-key.pem\", private-key = \"%1$s/server-key.pem\" }",
        "holds no PEM certificate",
        "tls { cert-chain = \"%1$s/server.pem\" }",
        "set both cert-chain and private-key",
        "tls { client-ca = \"%1$s/ca.pem\" }",
        "moe.gateway.tls.client-ca is set but TLS is off",
        "tls { cert-chain = \"%1$s/server.pem\", private-key = \"%1$s/server-key.pem\", client-ca = \"%1$s/nope.pem\" }",
        "moe.gateway.tls.client-ca: cannot read",
        "api-keys-file = \"%1$s/empty-keys\"",
        "holds no key",
        "api-keys = [\"has space\"]",
        "printable ASCII without spaces",
        "tls { cert-chain = \"%1$s/server.pem\", private-key = \"%1$s/server-key.pem\", reload-interval = 0s }",
        "moe.gateway.tls.reload-interval must be positive");
    for (var c : cases.entrySet()) {
      var config = ConfigFactory.parseString("moe.gateway {" + c.getKey().formatted(certs) + "}")
          .withFallback(ConfigFactory.load());
      IllegalArgumentException e =
          assertThrows(IllegalArgumentException.class, () -> GatewaySecurity.fromConfig(config, Map.of()), c.getKey());
      assertTrue(e.getMessage().contains(c.getValue()), e.getMessage());
    }
    // Keys from the list, the file and the variable together, without repeats.
    java.nio.file.Files.writeString(certs.resolve("keys"), "# team a\nkey-a\n\nkey-b\n");
    var config = ConfigFactory.parseString(
            "moe.gateway { api-keys = [key-a], api-keys-file = \"" + certs + "/keys\", api-keys-env = MY_KEYS }")
        .withFallback(ConfigFactory.load());
    GatewaySecurity s = GatewaySecurity.fromConfig(config, Map.of("MY_KEYS", "key-c, key-d key-a"));
    assertEquals(List.of("key-a", "key-b", "key-c", "key-d"), s.apiKeys());
    assertEquals(Optional.empty(), s.tls());
    // A set but empty variable is a missing secret, not "no keys".
    var fromEnv =
        ConfigFactory.parseString("moe.gateway { api-keys-env = MY_KEYS }").withFallback(ConfigFactory.load());
    IllegalArgumentException empty = assertThrows(IllegalArgumentException.class,
        () -> GatewaySecurity.fromConfig(fromEnv, Map.of("MY_KEYS", " ")));
    assertTrue(empty.getMessage().contains("$MY_KEYS is set but holds no key"), empty.getMessage());
    assertTrue(GatewaySecurity.fromConfig(fromEnv, Map.of()).apiKeys().isEmpty(), "unset: no keys");
    // Keys without TLS are allowed, with a warning; no keys, no warning.
    assertTrue(s.warning().orElseThrow().contains("plaintext"));
    assertEquals(Optional.empty(), GatewaySecurity.fromConfig(ConfigFactory.load(), Map.of()).warning());
    // The defaults: plaintext, no key, 64 calls per client.
    GatewaySecurity defaults = GatewaySecurity.fromConfig(ConfigFactory.load(), Map.of());
    assertEquals(new GatewaySecurity(Optional.empty(), List.of(), 64), defaults);
    assertEquals("plaintext, no API key, at most 64 calls per client", defaults.describe());
  }
}
