package io.moecluster.gateway.security;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Instant;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.CertificateException;
import java.security.cert.CertificateExpiredException;
import java.security.cert.CertificateNotYetValidException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Date;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads and checks the PEM files of the gateway's TLS settings with the JDK alone, so that a
 * missing, unreadable or malformed file, or a key that does not belong to the certificate, is a
 * start-up error naming the config key and the file rather than a handshake failure later.
 */
public final class PemFiles {
  private static final Pattern BLOCK =
      Pattern.compile("-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\\s]*)-----END \\1-----");

  private PemFiles() {}

  /** Checks every file of {@code tls}; throws IllegalArgumentException with the reason. */
  static void check(GatewaySecurity.TlsFiles tls) {
    identity(tls);
    tls.clientCa().ifPresent(ca -> certificates(ca, "moe.gateway.tls.client-ca"));
  }

  /** The server's certificate chain and its key. */
  record Identity(List<X509Certificate> chain, PrivateKey key) {}

  /**
   * Reads the server's certificate chain and key of {@code tls}, checked: the key is the first
   * certificate's, and that certificate is within its validity. IllegalArgumentException otherwise.
   */
  static Identity identity(GatewaySecurity.TlsFiles tls) {
    List<X509Certificate> chain = certificates(tls.certChain(), "moe.gateway.tls.cert-chain");
    PrivateKey key = privateKey(tls.privateKey(), "moe.gateway.tls.private-key");
    if (!matches(key, chain.getFirst().getPublicKey())) {
      throw new IllegalArgumentException(
          "moe.gateway.tls.private-key: "
              + tls.privateKey()
              + " is not the key of the first certificate in "
              + tls.certChain()
              + " ("
              + chain.getFirst().getSubjectX500Principal().getName()
              + ")");
    }
    checkValidity(chain.getFirst(), tls.certChain(), Instant.now());
    return new Identity(chain, key);
  }

  /**
   * A server certificate outside its validity period fails every handshake: refuse it at start-up
   * instead of serving errors.
   */
  public static void checkValidity(X509Certificate cert, Path file, Instant now) {
    Date at = Date.from(now);
    try {
      cert.checkValidity(at);
    } catch (CertificateExpiredException e) {
      throw new IllegalArgumentException("moe.gateway.tls.cert-chain: the certificate in " + file + " ("
          + cert.getSubjectX500Principal().getName() + ") expired on " + cert.getNotAfter().toInstant());
    } catch (CertificateNotYetValidException e) {
      throw new IllegalArgumentException("moe.gateway.tls.cert-chain: the certificate in " + file + " ("
          + cert.getSubjectX500Principal().getName() + ") is not valid before " + cert.getNotBefore().toInstant());
    }
  }

  /** The certificates of a PEM file, in file order; at least one. */
  public static List<X509Certificate> certificates(Path file, String key) {
    String text = read(file, key);
    List<X509Certificate> out = new ArrayList<>();
    try {
      CertificateFactory factory = CertificateFactory.getInstance("X.509");
      Matcher m = BLOCK.matcher(text);
      while (m.find()) {
        if (m.group(1).equals("CERTIFICATE")) {
          out.add((X509Certificate) factory.generateCertificate(new ByteArrayInputStream(decode(m.group(2)))));
        }
      }
    } catch (CertificateException | IllegalArgumentException e) {
      throw new IllegalArgumentException(key + ": " + file + " holds a malformed certificate (" + e.getMessage() + ")");
    }
    if (out.isEmpty()) {
      throw new IllegalArgumentException(
          key + ": " + file + " holds no PEM certificate ('-----BEGIN CERTIFICATE-----')");
    }
    return out;
  }

  /** The PKCS#8 private key of a PEM file (RSA, EC or Ed25519). */
  public static PrivateKey privateKey(Path file, String key) {
    String text = read(file, key);
    Matcher m = BLOCK.matcher(text);
    while (m.find()) {
      String type = m.group(1);
      if (type.equals("PRIVATE KEY")) {
        byte[] der = decode(m.group(2));
        for (String algorithm : new String[] {"RSA", "EC", "Ed25519", "Ed448"}) {
          try {
            return KeyFactory.getInstance(algorithm).generatePrivate(new PKCS8EncodedKeySpec(der));
          } catch (GeneralSecurityException e) {
            // try the next algorithm
          }
        }
        throw new IllegalArgumentException(key + ": " + file + " holds a PKCS#8 key of an unsupported algorithm");
      }
      if (type.endsWith("PRIVATE KEY")) {
        throw new IllegalArgumentException(
            key + ": " + file + " holds a '" + type + "'; convert it to PKCS#8 with"
                + " 'openssl pkcs8 -topk8 -nocrypt -in " + file + " -out key.pem'");
      }
    }
    throw new IllegalArgumentException(
        key + ": " + file + " holds no PEM private key ('-----BEGIN PRIVATE KEY-----')");
  }

  /** Whether {@code key} signs what {@code publicKey} verifies. */
  static boolean matches(PrivateKey key, PublicKey publicKey) {
    String algorithm =
        switch (key.getAlgorithm()) {
          case "RSA" -> "SHA256withRSA";
          case "EC" -> "SHA256withECDSA";
          default -> key.getAlgorithm(); // Ed25519, Ed448
        };
    try {
      byte[] probe = "moe-cluster key check".getBytes(StandardCharsets.US_ASCII);
      Signature signer = Signature.getInstance(algorithm);
      signer.initSign(key);
      signer.update(probe);
      byte[] signature = signer.sign();
      Signature verifier = Signature.getInstance(algorithm);
      verifier.initVerify(publicKey);
      verifier.update(probe);
      return verifier.verify(signature);
    } catch (GeneralSecurityException e) {
      return false; // different algorithms, or a key the certificate's key cannot check
    }
  }

  private static String read(Path file, String key) {
    try {
      // Latin-1 never fails to decode: a binary file is reported as holding no PEM block.
      return Files.readString(file, StandardCharsets.ISO_8859_1);
    } catch (IOException e) {
      throw new IllegalArgumentException(key + ": cannot read " + file + " (" + reason(e) + ")");
    }
  }

  private static byte[] decode(String base64) {
    return Base64.getMimeDecoder().decode(base64.replaceAll("\\s", ""));
  }

  /** What went wrong with a file, in words (NoSuchFileException's message is only the path). */
  static String reason(IOException e) {
    if (e instanceof NoSuchFileException) {
      return "no such file";
    }
    if (e instanceof AccessDeniedException) {
      return "permission denied";
    }
    return e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
  }
}
