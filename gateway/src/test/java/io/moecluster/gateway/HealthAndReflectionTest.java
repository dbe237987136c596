package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.stub.StreamObserver;
import io.moecluster.proto.v1.InferenceGrpc;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** grpc.health.v1 follows the routers' readiness; reflection v1 and v1alpha list the service. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class HealthAndReflectionTest {
  private static ActorSystem<Void> system;
  private static GatewayFixture gateway;

  @BeforeAll
  static void start() {
    system = TestClusters.start("health", List.of("gateway"));
    gateway = GatewayFixture.start(system, GatewayFixture.settings(""), TestModel.tiny());
  }

  @AfterAll
  static void stop() {
    if (gateway != null) {
      gateway.close();
    }
    TestClusters.stop(system);
  }

  private static ServingStatus check(String service) {
    return HealthGrpc.newBlockingStub(gateway.channel)
        .withDeadlineAfter(5, TimeUnit.SECONDS)
        .check(HealthCheckRequest.newBuilder().setService(service).build())
        .getStatus();
  }

  private static void awaitHealth(ServingStatus expected) {
    GatewayFixture.await(
        "health " + expected,
        Duration.ofSeconds(10),
        () -> check("") == expected && check(InferenceGrpc.SERVICE_NAME) == expected);
  }

  @Test
  void notServingUntilARouterReportsItsExpertsReady() {
    assertEquals(ServingStatus.NOT_SERVING, check(""));
    assertEquals(ServingStatus.NOT_SERVING, check(InferenceGrpc.SERVICE_NAME));
    TestRouter router = new TestRouter();
    router.ready = false;
    ActorRef<Object> ref = system.systemActorOf(router.behavior(), "health-router", Props.empty());
    // Listed but not ready: stays NOT_SERVING for a few polls.
    GatewayFixture.await("three polls", Duration.ofSeconds(5), () -> router.statusAsked.get() >= 3);
    assertEquals(ServingStatus.NOT_SERVING, check(""));
    router.ready = true;
    awaitHealth(ServingStatus.SERVING);
    router.ready = false;
    awaitHealth(ServingStatus.NOT_SERVING);
    router.ready = true;
    awaitHealth(ServingStatus.SERVING);
    // The router goes away: no router listed, NOT_SERVING again.
    ref.tell(TestRouter.Stop.INSTANCE);
    awaitHealth(ServingStatus.NOT_SERVING);
  }

  @Test
  void reflectionV1ListsTheInferenceService() throws Exception {
    List<String> services = new ArrayList<>();
    CountDownLatch done = new CountDownLatch(1);
    StreamObserver<io.grpc.reflection.v1.ServerReflectionRequest> requests =
        io.grpc.reflection.v1.ServerReflectionGrpc.newStub(gateway.channel)
            .serverReflectionInfo(
                new StreamObserver<>() {
                  @Override
                  public void onNext(io.grpc.reflection.v1.ServerReflectionResponse r) {
                    r.getListServicesResponse()
                        .getServiceList()
                        .forEach(s -> services.add(s.getName()));
                  }

                  @Override
                  public void onError(Throwable t) {
                    done.countDown();
                  }

                  @Override
                  public void onCompleted() {
                    done.countDown();
                  }
                });
    requests.onNext(
        io.grpc.reflection.v1.ServerReflectionRequest.newBuilder().setListServices("").build());
    requests.onCompleted();
    assertTrue(done.await(10, TimeUnit.SECONDS));
    assertTrue(services.contains("moecluster.v1.Inference"), services.toString());
    assertTrue(services.contains("grpc.health.v1.Health"), services.toString());
  }

  @Test
  @SuppressWarnings("deprecation")
  void reflectionV1alphaListsTheInferenceService() throws Exception {
    List<String> services = new ArrayList<>();
    CountDownLatch done = new CountDownLatch(1);
    StreamObserver<io.grpc.reflection.v1alpha.ServerReflectionRequest> requests =
        io.grpc.reflection.v1alpha.ServerReflectionGrpc.newStub(gateway.channel)
            .serverReflectionInfo(
                new StreamObserver<>() {
                  @Override
                  public void onNext(io.grpc.reflection.v1alpha.ServerReflectionResponse r) {
                    r.getListServicesResponse()
                        .getServiceList()
                        .forEach(s -> services.add(s.getName()));
                  }

                  @Override
                  public void onError(Throwable t) {
                    done.countDown();
                  }

                  @Override
                  public void onCompleted() {
                    done.countDown();
                  }
                });
    requests.onNext(
        io.grpc.reflection.v1alpha.ServerReflectionRequest.newBuilder()
            .setListServices("")
            .build());
    requests.onCompleted();
    assertTrue(done.await(10, TimeUnit.SECONDS));
    assertTrue(services.contains("moecluster.v1.Inference"), services.toString());
  }
}
