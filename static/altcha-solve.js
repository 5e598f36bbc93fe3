// Solves the signup form's ALTCHA proof of work in the reader's browser (subscribers/challenge.py):
// finds the number whose SHA-256 with the salt is the challenge, and puts the answer in the form.
// Our own few lines: no third party, no cookie, nothing sent anywhere but with the form.
(function () {
  "use strict";
  function hex(buffer) {
    return Array.from(new Uint8Array(buffer), function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }
  async function solve(form) {
    var challenge = JSON.parse(form.getAttribute("data-challenge"));
    var button = form.querySelector("button[type=submit]");
    var status = form.querySelector(".pow-status");
    var encoder = new TextEncoder();
    for (var number = 0; number <= challenge.maxNumber; number++) {
      var digest = await crypto.subtle.digest("SHA-256", encoder.encode(challenge.salt + number));
      if (hex(digest) === challenge.challenge) {
        form.querySelector("input[name=altcha]").value = btoa(JSON.stringify({
          algorithm: challenge.algorithm, challenge: challenge.challenge, number: number,
          salt: challenge.salt, signature: challenge.signature
        }));
        button.disabled = false;
        if (status) { status.textContent = ""; }
        return;
      }
    }
    if (status) { status.textContent = "This page could not get ready. Please reload it."; }
  }
  document.querySelectorAll("form[data-challenge]").forEach(solve);
})();
