package io.moecluster.deploy.commands;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.deploy.cluster.Placement;
import io.moecluster.proto.v1.ExpertPlacement;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.ModelInfo;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

class RemoteGenerationTest {

  private static GenerateRequest parse(String... args) {
    ClientCommand.Generate command = new ClientCommand.Generate();
    new CommandLine(command).parseArgs(args);
    return RemoteGeneration.request(command.options);
  }

  @Test
  void everySamplingFieldIsSentSoServerDefaultsNeverApply() {
    GenerateRequest r = parse("--prompt", "Hello", "--max-tokens", "7", "--seed", "0");
    assertEquals("Hello", r.getText());
    assertFalse(r.getChat());
    assertEquals(7, r.getMaxTokens());
    var s = r.getSampling();
    // moe generate's defaults, explicitly.
    assertTrue(s.hasTemperature() && s.hasTopP() && s.hasRepetitionPenalty() && s.hasSeed());
    assertEquals(0.8f, s.getTemperature());
    assertEquals(0.95f, s.getTopP());
    assertEquals(1f, s.getRepetitionPenalty());
    assertEquals(0, s.getSeed());
    assertEquals(0, s.getTopK());
    assertFalse(r.getIgnoreEos());
  }

  @Test
  void idsStopsAndFlagsMapOneToOne() {
    GenerateRequest r = parse("--prompt-ids", "1,5,9", "--temperature", "0", "--top-k", "3", "--min-p", "0.1",
        "--stop", "\n", "--stop", "END", "--ignore-eos", "--repetition-penalty", "1.2", "--seed", "42");
    assertEquals(List.of(1, 5, 9), r.getTokenIds().getIdsList());
    assertEquals(List.of("\n", "END"), r.getStopList());
    assertTrue(r.getIgnoreEos());
    assertEquals(0f, r.getSampling().getTemperature());
    assertEquals(3, r.getSampling().getTopK());
    assertEquals(0.1f, r.getSampling().getMinP());
    assertEquals(1.2f, r.getSampling().getRepetitionPenalty());
    assertEquals(42, r.getSampling().getSeed());
  }

  @Test
  void chatTextSetsTheChatFlag() {
    GenerateRequest r = parse("--prompt", "Hi", "--chat");
    assertTrue(r.getChat());
    assertEquals("Hi", r.getText());
  }

  @Test
  void placementIsGroupedPerNode() {
    ModelInfo info = ModelInfo.newBuilder()
        .addPlacement(p(0, 0, "pekko://moe@127.0.0.1:25521", true))
        .addPlacement(p(0, 1, "pekko://moe@127.0.0.1:25522", true))
        .addPlacement(p(1, 0, "pekko://moe@127.0.0.1:25521", false))
        .build();
    Map<String, String> names = Map.of("pekko://moe@127.0.0.1:25521", "expert-1");
    assertEquals(List.of(
            "expert node 127.0.0.1:25521 (expert-1): 2 experts, 1 loading (layer/expert 0/0 1/0)",
            "expert node 127.0.0.1:25522: 1 expert (layer/expert 0/1)"),
        Placement.describe(info, names::get));
    assertEquals(List.of("experts: not placed yet"), Placement.describe(ModelInfo.getDefaultInstance(), n -> null));
  }

  private static ExpertPlacement p(int layer, int expert, String node, boolean loaded) {
    return ExpertPlacement.newBuilder().setLayer(layer).setExpert(expert).setNode(node).setLoaded(loaded).build();
  }
}
