package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Context;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/** A Generate call the test can cancel, recording what arrived. */
final class GrpcStream implements StreamObserver<GenerateResponse> {
  final Context.CancellableContext context = Context.current().withCancellation();
  final List<GenerateResponse> received = new CopyOnWriteArrayList<>();
  final CountDownLatch first = new CountDownLatch(1);
  final CompletableFuture<Status> end = new CompletableFuture<>();

  static GrpcStream start(GatewayFixture gateway, GenerateRequest request) {
    GrpcStream s = new GrpcStream();
    s.context.run(() -> gateway.async().generate(request, s));
    return s;
  }

  @Override
  public void onNext(GenerateResponse value) {
    received.add(value);
    if (value.getTokensCount() > 0) {
      first.countDown();
    }
  }

  @Override
  public void onError(Throwable t) {
    end.complete(Status.fromThrowable(t));
    first.countDown();
  }

  @Override
  public void onCompleted() {
    end.complete(Status.OK);
    first.countDown();
  }

  void awaitFirstToken() throws InterruptedException {
    assertTrue(first.await(10, TimeUnit.SECONDS), "no first token");
    assertFalse(end.isDone(), "the stream ended early: " + end.getNow(null));
  }

  void awaitFirstTokenOrEnd() throws InterruptedException {
    assertTrue(first.await(10, TimeUnit.SECONDS), "no first token");
  }
}
