package io.moecluster.deploy.commands;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.deploy.MoeRun;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code moe init-model} and {@code moe generate} end to end, in process, with their errors. */
class LocalCommandsTest {
  @TempDir static Path dir;
  static Path model;


  private static MoeRun run(String... args) {
    return MoeRun.of(args);
  }

  @BeforeAll
  static void writeModel() {
    model = dir.resolve("tiny");
    MoeRun r = run("init-model", "--preset", "tiny", "--dtype", "f32", "--seed", "5", "--out", model.toString(), "--shards", "2");
    assertEquals(0, r.exitCode(), r.err());
    assertTrue(Files.exists(model.resolve("model.safetensors.index.json")));
    assertTrue(Files.exists(model.resolve("tokenizer.json")));
  }

  @Test
  void generateJsonIsReproducible() throws Exception {
    String[] args = {"generate", "--model", model.toString(), "--prompt", "We hold these truths",
        "--max-tokens", "6", "--temperature", "0.9", "--seed", "3", "--ignore-eos", "--json", "--threads", "1"};
    MoeRun first = run(args);
    assertEquals(0, first.exitCode(), first.err());
    JsonNode json = new ObjectMapper().readTree(first.out());
    assertEquals(6, json.get("generated_ids").size());
    assertEquals("length", json.get("finish_reason").asText());
    assertTrue(json.get("prompt_ids").size() > 1);
    // The same tokens whether the weights are copied (auto, on this small model) or read in place.
    String[] mapped = java.util.Arrays.copyOf(args, args.length + 2);
    mapped[args.length] = "--weights";
    mapped[args.length + 1] = "map";
    MoeRun second = run(mapped);
    assertEquals(0, second.exitCode(), second.err());
    JsonNode again = new ObjectMapper().readTree(second.out());
    assertEquals(json.get("generated_ids"), again.get("generated_ids"));
    assertEquals(json.get("text"), again.get("text"));
  }

  @Test
  void promptIdsAndTextStreamToStdout() {
    MoeRun r = run("generate", "--model", model.toString(), "--prompt-ids", "0,5,9", "--max-tokens", "4",
        "--temperature", "0", "--ignore-eos");
    assertEquals(0, r.exitCode(), r.err());
    assertTrue(r.err().contains("decode"), r.err());
  }

  @Test
  void everyCommandAnswersHelpBeforeCheckingRequiredOptions() {
    for (String[] args : new String[][] {{"serve", "--help"}, {"generate", "-h"}, {"client", "generate", "--help"},
        {"local-cluster", "--help"}, {"node", "--help"}, {"init-model", "--help"}}) {
      MoeRun r = run(args);
      assertEquals(0, r.exitCode(), String.join(" ", args) + ": " + r.err());
      assertTrue(r.out().contains("Usage: moe"), r.out());
    }
  }

  @Test
  void badFlagsAreUsageErrors() {
    assertUserError(run("generate", "--model", model.toString(), "--prompt", "x", "--temperature", "-1"), "--temperature");
    assertUserError(run("generate", "--model", model.toString(), "--prompt", "x", "--top-p", "0"), "--top-p");
    assertUserError(run("generate", "--model", model.toString(), "--prompt", "x", "--max-tokens", "0"), "--max-tokens");
    assertUserError(run("generate", "--model", model.toString(), "--prompt", ""), "--prompt");
    assertUserError(run("generate", "--model", model.toString(), "--prompt-ids", "1,x"), "x");
    assertUserError(run("generate", "--model", model.toString(), "--prompt-ids", "1,999999"), "999999");
    assertUserError(run("generate", "--model", model.toString()), "--prompt");
    assertUserError(run("generate", "--model", model.toString(), "--prompt", "x", "--weights", "mmap"),
        "--weights must be one of auto, copy, map; got 'mmap'");
    assertUserError(run("init-model", "--preset", "huge", "--out", dir.resolve("x").toString()), "huge");
    assertUserError(run("init-model", "--dtype", "f16", "--out", dir.resolve("x").toString()), "f16");
    assertUserError(run("generate", "--model", model.toString(), "--prompt", "x", "--threads", "2147483647"),
        "--threads must be in [0, 1024]");
    assertUserError(run("bench-local", "--model", model.toString(), "--threads", "-1"), "--threads");
    assertUserError(run("bench-local", "--model", model.toString(), "--prompt-tokens", "5", "--max-tokens",
        "2000000000"), "must fit the model's context length");
    assertUserError(run("init-model", "--preset", "tiny", "--out", model.resolve("config.json").toString()),
        "a file is in the way");
    assertUserError(run("init-model", "--preset", "tiny", "--out", model.resolve("config.json/sub").toString()),
        "config.json");
  }

  @Test
  void aRefusedInitModelLeavesTheModelThere() throws Exception {
    Path copy = dir.resolve("kept");
    assertEquals(0, run("init-model", "--preset", "tiny", "--seed", "5", "--out", copy.toString()).exitCode());
    byte[] config = Files.readAllBytes(copy.resolve("config.json"));
    assertUserError(run("init-model", "--preset", "small", "--shards", "100000", "--out", copy.toString()),
        "shards");
    org.junit.jupiter.api.Assertions.assertArrayEquals(config, Files.readAllBytes(copy.resolve("config.json")));
    assertEquals(0, run("generate", "--model", copy.toString(), "--prompt", "x", "--max-tokens", "2").exitCode());
  }

  @Test
  void missingOrBrokenModelIsAUserError() throws Exception {
    assertUserError(run("generate", "--model", dir.resolve("nope").toString(), "--prompt", "x"), "nope");
    Path broken = dir.resolve("broken");
    Files.createDirectories(broken);
    Files.copy(model.resolve("tokenizer.json"), broken.resolve("tokenizer.json"));
    Files.copy(model.resolve("config.json"), broken.resolve("config.json"));
    Files.writeString(broken.resolve("model.safetensors"), "short");
    assertUserError(run("generate", "--model", broken.toString(), "--prompt", "x"), "model.safetensors");
  }

  @Test
  void benchLocalReportsSpeedsBoundsAndInterTokenLatency() {
    MoeRun r = run("bench-local", "--model", model.toString(), "--threads", "1", "--prompt-tokens", "5",
        "--max-tokens", "6", "--runs", "1");
    assertEquals(0, r.exitCode(), r.err());
    String out = r.out();
    for (String line : new String[] {"read bandwidth", "FMA peak", "active weights", "decode ", "prefill "}) {
      assertTrue(out.contains(line), "missing '" + line + "': " + out);
    }
    java.util.regex.Matcher itl = java.util.regex.Pattern
        .compile("decode ITL +p50 ([0-9.]+) ms, p99 ([0-9.]+) ms").matcher(out);
    assertTrue(itl.find(), out);
    double p50 = Double.parseDouble(itl.group(1));
    double p99 = Double.parseDouble(itl.group(2));
    assertTrue(p50 > 0 && p99 >= p50, "p50 " + p50 + ", p99 " + p99);
    // One run: its 5 gaps have the mean the decode rate reports, and the median of 5 values that
    // are not negative is at most 5/3 of their mean (slack for the histogram's rounding).
    java.util.regex.Matcher decode = java.util.regex.Pattern.compile("decode +([0-9.]+) tokens/s").matcher(out);
    assertTrue(decode.find(), out);
    double meanGapMs = 1000 / Double.parseDouble(decode.group(1));
    assertTrue(p50 <= 2 * meanGapMs, "ITL p50 " + p50 + " ms against a mean gap of " + meanGapMs + " ms");
  }

  @Test
  void prefillCountsEveryLayerPerPromptTokenAndTheLmHeadOnce() {
    try (LocalGenerator g = LocalGenerator.open(model, 1)) {
      ModelConfig c = g.config();
      int h = c.hiddenSize();
      double attention = (double) h * c.headDim() * (2 * c.numHeads() + 2 * c.numKvHeads());
      double perLayer = attention + (double) c.numExperts() * h + 3.0 * c.topK() * c.expertIntermediateSize() * h;
      double lmHead = (double) c.vocabSize() * h;
      for (int prompt : new int[] {1, 7}) {
        assertEquals(2 * (c.numLayers() * perLayer * prompt + lmHead),
            BenchLocalCommand.prefillFlops(g.model().dense(), c, prompt), 1e-6, "prompt of " + prompt);
      }
    }
  }

  @Test
  void ratiosAreSummedUpByTheirMedianAndRange() {
    assertEquals("one run", BenchLocalCommand.ratioSpread(new double[] {0.8}));
    assertEquals("median per-run ratio; runs 0.41-1.17",
        BenchLocalCommand.ratioSpread(new double[] {0.9, 1.17, 0.41, 0.75}));
  }

  @Test
  void benchLocalRejectsBadFlags() {
    assertUserError(run("bench-local", "--model", model.toString(), "--runs", "0"), "--runs");
    assertUserError(run("bench-local", "--model", model.toString(), "--max-tokens", "1"), "--max-tokens");
    assertUserError(run("bench-local", "--model", model.toString(), "--prompt-tokens", "100000", "--runs", "1"),
        "context length");
    assertUserError(run("bench-local", "--model", dir.resolve("nope").toString()), "nope");
  }

  private static void assertUserError(MoeRun r, String mention) {
    assertEquals(2, r.exitCode(), "exit code; stderr: " + r.err());
    assertTrue(r.err().contains(mention), "stderr should mention " + mention + ": " + r.err());
    assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
  }
}
