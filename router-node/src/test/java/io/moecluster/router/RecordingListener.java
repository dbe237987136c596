package io.moecluster.router;

import io.moecluster.core.generate.FinishReason;
import io.moecluster.core.generate.TokenEvent;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;

/** Collects one sequence's engine events, for tests. */
class RecordingListener implements Engine.Listener {
  final List<TokenEvent> tokens = new CopyOnWriteArrayList<>();
  /** "reason" for a normal end, "FAILED CODE: message" for a failure. */
  final CompletableFuture<String> end = new CompletableFuture<>();
  final CompletableFuture<Void> firstToken = new CompletableFuture<>();
  volatile int promptTokens = -1;
  volatile int completionTokens = -1;

  @Override
  public void onToken(TokenEvent token) {
    tokens.add(token);
    firstToken.complete(null);
  }

  @Override
  public void onFinished(FinishReason reason, int prompt, int completion) {
    promptTokens = prompt;
    completionTokens = completion;
    if (!end.complete(reason.name())) {
      throw new AssertionError("second end");
    }
  }

  @Override
  public void onFailed(String code, String message) {
    if (!end.complete("FAILED " + code + ": " + message)) {
      throw new AssertionError("second end");
    }
  }

  int[] ids() {
    return tokens.stream().mapToInt(TokenEvent::tokenId).toArray();
  }
}
