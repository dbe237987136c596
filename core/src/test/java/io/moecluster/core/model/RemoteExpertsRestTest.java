package io.moecluster.core.model;

import static io.moecluster.core.model.ForwardHarness.prefill;
import static io.moecluster.core.model.ForwardHarness.prompt;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.kernel.ScalarKernels;
import io.moecluster.core.tensor.DType;
import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * A forward pass whose experts run elsewhere lets its kernel helpers rest before each layer's
 * wait (so they leave the cores to the expert processes), and only then; the logits stay the same.
 */
class RemoteExpertsRestTest {

  @Test
  void restsBeforeEveryRemoteExpertWaitAndOnlyThen() {
    Path dir = TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, DType.F32);
    AtomicInteger rests = new AtomicInteger();
    Kernels kernels = countingRests(new ScalarKernels(), rests);
    try (MoeModel model = MoeModel.load(dir, kernels)) {
      int layers = model.config().numLayers();
      int[] tokens = prompt(5L, 4, model.config().vocabSize());

      float[][] local = prefill(model, new ForwardPass(model, model.experts()), tokens);
      assertEquals(0, rests.get(), "experts computed in this pass's own kernels: no rest");

      ExpertExecutor elsewhere = new ExpertExecutor() {
        @Override
        public List<float[]> run(int layer, List<ExpertTask> tasks) {
          return model.experts().run(layer, tasks);
        }

        @Override
        public boolean remote() {
          return true;
        }
      };
      float[][] remote = prefill(model, new ForwardPass(model, elsewhere), tokens);
      assertEquals(layers, rests.get(), "one rest per layer of the step");
      for (int p = 0; p < tokens.length; p++) {
        assertArrayEquals(local[p], remote[p], 0f, "position " + p);
      }
    }
  }

  /** {@code delegate}, counting the calls of {@link Kernels#rest}. */
  private static Kernels countingRests(Kernels delegate, AtomicInteger rests) {
    InvocationHandler h = (proxy, method, args) -> {
      if (method.getName().equals("rest") && method.getParameterCount() == 0) {
        rests.incrementAndGet();
        return null;
      }
      try {
        return method.invoke(delegate, args);
      } catch (InvocationTargetException e) {
        throw e.getCause();
      }
    };
    return (Kernels) Proxy.newProxyInstance(Kernels.class.getClassLoader(), new Class<?>[] {Kernels.class}, h);
  }
}
