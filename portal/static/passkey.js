// The portal's one script: the WebAuthn ceremonies, which only the browser's
// navigator.credentials can run. A form marked data-passkey="create" or "get" carries the
// server's options (JSON); on submit the browser makes or uses a passkey, and the form posts
// the credential (JSON) in its "credential" field. Every other page works without script.
"use strict";

for (const form of document.querySelectorAll("form[data-passkey]")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const failed = form.querySelector(".passkey-failed");
    if (failed) failed.hidden = true;
    try {
      const options = JSON.parse(form.dataset.options);
      const credential =
        form.dataset.passkey === "create"
          ? await navigator.credentials.create({
              publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
            })
          : await navigator.credentials.get({
              publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
            });
      form.elements.credential.value = JSON.stringify(credential.toJSON());
      form.submit();
    } catch (error) {
      // Cancelled, timed out, or no authenticator: the page stays, and says so.
      if (failed) failed.hidden = false;
    }
  });
}
