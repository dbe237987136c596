package io.moecluster.deploy.cluster;

import com.typesafe.config.Config;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.UnrecoverableKeyException;
import javax.net.ssl.KeyManagerFactory;

/**
 * Opens the key and trust stores of Artery's TLS before the node starts. Pekko reads them only at
 * the first connection: a mistyped path or password let a node start, print that it started, and
 * then fail every handshake (a joining node gave up after a minute, a lone seed never noticed).
 * Checked here, the same mistake stops the node at once with the setting named.
 */
final class ArteryTlsStores {
  static final String TRANSPORT_KEY = "pekko.remote.artery.transport";
  static final String ENGINE_KEY = "pekko.remote.artery.ssl.config-ssl-engine";
  private static final String PROVIDER_KEY = "pekko.remote.artery.ssl.ssl-engine-provider";
  private static final String DEFAULT_PROVIDER = "org.apache.pekko.remote.artery.tcp.ConfigSSLEngineProvider";

  private ArteryTlsStores() {}

  /** Throws IllegalArgumentException naming the setting when a store cannot be opened. */
  static void check(Config config) {
    if (!config.hasPath(TRANSPORT_KEY) || !config.getString(TRANSPORT_KEY).equals("tls-tcp")
        || !config.hasPath(ENGINE_KEY)
        || (config.hasPath(PROVIDER_KEY) && !config.getString(PROVIDER_KEY).equals(DEFAULT_PROVIDER))) {
      return; // no TLS, or a provider of the user's own that reads its stores its own way
    }
    Config e = config.getConfig(ENGINE_KEY);
    KeyStore keys = open(e, "key-store", "key-store-password");
    char[] keyPassword = e.getString("key-password").toCharArray();
    try {
      KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm()).init(keys, keyPassword);
    } catch (UnrecoverableKeyException ex) {
      throw new IllegalArgumentException(ENGINE_KEY + ".key-password: cannot recover the key of "
          + e.getString("key-store") + " with it (" + ex.getMessage() + ")");
    } catch (GeneralSecurityException ex) {
      throw new IllegalArgumentException(ENGINE_KEY + ".key-store: " + e.getString("key-store")
          + " holds no usable key (" + ex.getMessage() + ")");
    }
    open(e, "trust-store", "trust-store-password");
  }

  private static KeyStore open(Config engine, String storeKey, String passwordKey) {
    String file = engine.getString(storeKey);
    String setting = ENGINE_KEY + "." + storeKey;
    try (InputStream in = Files.newInputStream(Path.of(file))) {
      KeyStore store = KeyStore.getInstance(KeyStore.getDefaultType());
      store.load(in, engine.getString(passwordKey).toCharArray());
      return store;
    } catch (NoSuchFileException ex) {
      throw new IllegalArgumentException(setting + ": " + file + " does not exist");
    } catch (IOException ex) {
      // KeyStore.load reports a wrong password as an IOException caused by UnrecoverableKeyException.
      String why = ex.getCause() instanceof UnrecoverableKeyException
          ? "wrong " + passwordKey + "?" : ex.getMessage();
      throw new IllegalArgumentException(setting + ": cannot open " + file + " (" + why + ")");
    } catch (GeneralSecurityException ex) {
      throw new IllegalArgumentException(setting + ": cannot open " + file + " (" + ex.getMessage() + ")");
    }
  }
}
