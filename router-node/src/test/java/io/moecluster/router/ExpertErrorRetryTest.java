package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.proto.cluster.v1.ExpertReply;
import org.junit.jupiter.api.Test;

/** Which error replies of an expert are tried again (on the other replica when there is one). */
class ExpertErrorRetryTest {

  @Test
  void aNodesFaultIsRetriedAndABadRequestIsNot() {
    ExpertReply gpu = ExpertReply.newBuilder().setError("expert 3/5#1 failed: CUDA_ERROR_LAUNCH_FAILED")
        .setNodeFault(true).build();
    ExpertReply closing = ExpertReply.newBuilder().setError("expert node pekko://moe@h:1 is shutting down")
        .setNodeFault(true).build();
    ExpertReply shape = ExpertReply.newBuilder()
        .setError("expert 3/5: input rows have 3 elements, the model's hidden size is 512").build();
    assertTrue(ExpertTransport.retryable(gpu));
    assertTrue(ExpertTransport.retryable(closing));
    assertFalse(ExpertTransport.retryable(shape));
    assertFalse(ExpertTransport.retryable(ExpertReply.newBuilder().setNodeFault(true).build()), "no error");
  }
}
