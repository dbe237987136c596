package io.moecluster.proto;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.GeneratedMessageV3;
import io.grpc.MethodDescriptor;
import io.grpc.MethodDescriptor.MethodType;
import io.grpc.ServiceDescriptor;
import io.moecluster.proto.cluster.v1.ActivationDType;
import io.moecluster.proto.cluster.v1.Activations;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.SequenceEvent;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.SamplingParams;
import io.moecluster.proto.v1.TokenIds;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

class ProtoRoundTripTest {

  @Test
  void generateRequestRoundTripsAndKeepsUnsetOptionalsUnset() throws Exception {
    GenerateRequest request =
        GenerateRequest.newBuilder()
            .setText("Why is the sky blue?")
            .setChat(true)
            .setSampling(SamplingParams.newBuilder().setTemperature(0f).setTopK(40).setSeed(0L))
            .setMaxTokens(64)
            .addStop("\n\n")
            .setLogprobs(3)
            .setRequestId("req-1")
            .build();

    GenerateRequest back = GenerateRequest.parseFrom(request.toByteArray());

    assertEquals(request, back);
    assertEquals(GenerateRequest.PromptCase.TEXT, back.getPromptCase());
    // An explicit 0 survives the wire and is told apart from "unset".
    assertTrue(back.getSampling().hasTemperature());
    assertEquals(0f, back.getSampling().getTemperature());
    assertTrue(back.getSampling().hasSeed());
    assertFalse(back.getSampling().hasTopP());
    assertFalse(back.getSampling().hasRepetitionPenalty());

    GenerateRequest byIds =
        GenerateRequest.newBuilder()
            .setTokenIds(TokenIds.newBuilder().addIds(1).addIds(15043))
            .build();
    GenerateRequest byIdsBack = GenerateRequest.parseFrom(byIds.toByteString());
    assertEquals(GenerateRequest.PromptCase.TOKEN_IDS, byIdsBack.getPromptCase());
    assertEquals(List.of(1, 15043), byIdsBack.getTokenIds().getIdsList());
  }

  @Test
  void expertCommandRoundTrips() throws Exception {
    ByteBuffer data = ByteBuffer.allocate(2 * 3 * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < 6; i++) {
      data.putFloat(i * 0.5f);
    }
    data.flip();
    ExpertCommand command =
        ExpertCommand.newBuilder()
            .setCompute(
                ComputeExperts.newBuilder()
                    .setStepId(Long.MAX_VALUE)
                    .setChunk(1)
                    .setLayer(3)
                    .setExpert(7)
                    .setInput(
                        Activations.newBuilder()
                            .setRows(2)
                            .setHidden(3)
                            .setDtype(ActivationDType.F32)
                            .setData(ByteString.copyFrom(data)))
                    .setReplyTo("pekko://moe@127.0.0.1:25520/temp/$a#123"))
            .build();

    ExpertCommand back = ExpertCommand.parseFrom(command.toByteArray());

    assertEquals(command, back);
    assertEquals(ExpertCommand.CommandCase.COMPUTE, back.getCommandCase());
    ByteBuffer floats = back.getCompute().getInput().getData().asReadOnlyByteBuffer();
    floats.order(ByteOrder.LITTLE_ENDIAN);
    assertEquals(2.5f, floats.getFloat(5 * Float.BYTES));
  }

  @Test
  void inferenceServiceHasFiveMethodsAndGenerateStreams() {
    ServiceDescriptor service = InferenceGrpc.getServiceDescriptor();
    assertEquals("moecluster.v1.Inference", service.getName());
    Map<String, MethodType> methods =
        service.getMethods().stream()
            .collect(
                Collectors.toMap(MethodDescriptor::getBareMethodName, MethodDescriptor::getType));
    assertEquals(
        Map.of(
            "Generate", MethodType.SERVER_STREAMING,
            "Complete", MethodType.UNARY,
            "Tokenize", MethodType.UNARY,
            "Detokenize", MethodType.UNARY,
            "GetModelInfo", MethodType.UNARY),
        methods);
    assertEquals(MethodType.SERVER_STREAMING, InferenceGrpc.getGenerateMethod().getType());
  }

  @Test
  void messagesAreProtobuf3GeneratedMessages() {
    // Pekko's ProtobufSerializer binds com.google.protobuf.GeneratedMessageV3 (protobuf 3.x).
    for (Class<?> c :
        new Class<?>[] {GenerateRequest.class, ExpertCommand.class, SequenceEvent.class}) {
      assertTrue(GeneratedMessageV3.class.isAssignableFrom(c), c + " extends GeneratedMessageV3");
    }
  }
}
