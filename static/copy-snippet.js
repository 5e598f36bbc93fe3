// The signup box room's Copy buttons. Without this script they stay hidden and the code is copied by hand.
"use strict";
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  var box = document.getElementById(button.dataset.copy);
  var status = document.getElementById(button.dataset.copy + "-status");
  function copied(ok) {
    status.textContent = ok ? "Copied. Now paste it into your blog."
                            : "Selected: press Ctrl+C (or ⌘C on a Mac) to copy it.";
  }
  function copyBySelection() {
    box.focus();
    box.select();
    try { copied(document.execCommand("copy")); } catch (e) { copied(false); }
  }
  button.hidden = false;
  button.addEventListener("click", function () {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(box.value).then(function () { box.select(); copied(true); }, copyBySelection);
    } else {
      copyBySelection();
    }
  });
});
