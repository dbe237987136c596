package io.moecluster.deploy.commands;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.deploy.cli.ProgressBars;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code moe generate}: generates in this process and streams the text to stdout. */
@Command(name = "generate", description = "Generate text in this process from a model directory.")
public final class GenerateCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--model", paramLabel = "DIR", required = true,
      description = "a Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)")
  Path model;

  @Mixin ThreadsOption threads;

  @Mixin GenerationOptions options;

  @Mixin WeightsOption weights;

  @Override
  public Integer call() {
    int threadCount = threads.threads();
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    try (LocalGenerator generator = LocalGenerator.open(model, threadCount, weights.placement())) {
      GenerationRequest request = options.request(generator.tokenizer());
      try (var bar = ProgressBars.bytes("loading weights", generator.checkpointBytes())) {
        generator.warmUp(bar::stepTo);
      }
      GenerationResult result = generator.generate(request, event -> {
        if (!options.json() && !event.textDelta().isEmpty()) {
          out.print(event.textDelta());
          out.flush();
        }
      });
      if (options.json()) {
        out.println(toJson(result));
      } else {
        out.println();
      }
      out.flush();
      err.printf(Locale.ROOT, "prompt %d tokens, prefill %.1f tokens/s; generated %d tokens, decode %.1f tokens/s (%s)%n",
          result.promptIds().length, result.prefillTokensPerSecond(), result.generatedIds().length,
          result.decodeTokensPerSecond(), result.finishReason().name().toLowerCase(Locale.ROOT));
      err.flush();
    }
    return 0;
  }

  static String toJson(GenerationResult r) {
    ObjectMapper json = new ObjectMapper();
    ObjectNode o = json.createObjectNode();
    var prompt = o.putArray("prompt_ids");
    for (int id : r.promptIds()) {
      prompt.add(id);
    }
    var generated = o.putArray("generated_ids");
    for (int id : r.generatedIds()) {
      generated.add(id);
    }
    o.put("text", r.text());
    o.put("finish_reason", r.finishReason().name().toLowerCase(Locale.ROOT));
    o.put("prefill_tokens_per_second", Math.round(r.prefillTokensPerSecond() * 10) / 10.0);
    o.put("decode_tokens_per_second", Math.round(r.decodeTokensPerSecond() * 10) / 10.0);
    return o.toString();
  }
}
