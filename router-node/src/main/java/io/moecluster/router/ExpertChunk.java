package io.moecluster.router;

import io.moecluster.proto.cluster.v1.ComputeExperts;

/** One chunk of one task: the unit that is sent, retried and hedged. Engine thread only. */
final class ExpertChunk {
  final int task;
  final int expert;
  final int firstRow;
  final int rows;
  final ComputeExperts.Builder request;
  final int preferred; // the replica it goes to while that one is healthy
  int inFlight;
  int probesInFlight; // of inFlight: probe copies, which nothing waits for
  int retries;
  long sendAt; // when to (re)send; Long.MAX_VALUE while attempts are in flight
  boolean hedged;
  boolean hedgeRefused; // due, but the other replica's breaker said no
  boolean waitsForBreaker; // every breaker refused: re-checked whenever anything happens
  boolean done;
  ExpertAttempt primary;
  ExpertAttempt last;
  ExpertAttempt winner; // the attempt whose answer was taken
  long doneAt;
  int sends; // attempts sent, hedges included
  String lastError = "";

  ExpertChunk(int task, int expert, int firstRow, int rows, ComputeExperts.Builder request, int preferred) {
    this.task = task;
    this.expert = expert;
    this.firstRow = firstRow;
    this.rows = rows;
    this.request = request;
    this.preferred = preferred;
  }

  /**
   * Attempts in flight that the chunk waits for: a probe copy may be going to an entity that will
   * never answer (its node not yet removed), so a failed primary is retried without waiting for it.
   */
  int awaited() {
    return inFlight - probesInFlight;
  }
}
