// Uploads on the session page: the "Upload file" button and files dropped on the transcript go to
// POST /api/sessions/<id>/files (multipart, the page's session cookie and CSRF header), one at a time, with
// progress and errors in #upload-status. The note the server adds arrives on the page's socket like any message;
// the Files panel (#files) is refreshed after an upload, when a note appears and when a run ends.
(function () {
  "use strict";

  function uploadBox() { return document.querySelector(".upload[data-upload-url]"); }
  function canUpload() {
    var composer = document.getElementById("composer");
    return uploadBox() !== null && !(composer && composer.hasAttribute("data-watching"));
  }
  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || ""; }
    catch (e) { return ""; }
  }
  function say(text, state) {
    var status = document.getElementById("upload-status");
    if (!status) return;
    status.textContent = text;
    status.dataset.state = state || "";
  }
  function refreshFiles() {
    if (window.htmx) window.htmx.trigger(document.body, "files-changed");
  }

  var queue = [];
  var busy = false;

  function uploadNext() {
    if (busy || queue.length === 0) return;
    busy = true;
    var file = queue.shift();
    var form = new FormData();
    form.append("file", file, file.name);
    var request = new XMLHttpRequest();
    request.open("POST", uploadBox().dataset.uploadUrl);
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) {
        say("Uploading " + file.name + "… " + Math.floor(100 * event.loaded / event.total) + "%", "busy");
      }
    });
    request.addEventListener("load", function () {
      var answer = {};
      try { answer = JSON.parse(request.responseText); } catch (e) { /* not JSON: a proxy's page */ }
      if (request.status === 201) {
        say("Uploaded " + answer.name, "done");
        refreshFiles();
      } else {
        say("Could not upload " + file.name + ": " + (answer.detail || ("HTTP " + request.status)), "error");
      }
    });
    request.addEventListener("error", function () {
      say("Could not upload " + file.name + ": the connection failed", "error");
    });
    request.addEventListener("loadend", function () { busy = false; uploadNext(); });
    say("Uploading " + file.name + "…", "busy");
    request.send(form);
  }

  function uploadAll(files) {
    if (!canUpload()) return;
    for (var i = 0; i < files.length; i++) queue.push(files[i]);
    uploadNext();
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("#upload-button")) document.getElementById("upload-input").click();
  });
  document.addEventListener("change", function (event) {
    if (event.target.id !== "upload-input") return;
    uploadAll(event.target.files);
    event.target.value = "";
  });

  // Drag and drop onto the transcript (#transcript may be swapped: listen on the document).
  function overTranscript(event) {
    return event.target instanceof Element && event.target.closest("#transcript") !== null &&
      event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types, "Files") !== -1;
  }
  function mark(on) {
    var transcript = document.getElementById("transcript");
    if (transcript) transcript.classList.toggle("drop-target", on);
  }
  document.addEventListener("dragover", function (event) {
    if (!overTranscript(event) || !canUpload()) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    mark(true);
  });
  document.addEventListener("dragleave", function (event) {
    if (event.target instanceof Element && event.target.id === "transcript") mark(false);
  });
  document.addEventListener("drop", function (event) {
    if (!(event.target instanceof Element) || event.target.closest("#transcript") === null) return;
    event.preventDefault();  // never let the browser open the file instead
    mark(false);
    if (event.dataTransfer && event.dataTransfer.files.length) uploadAll(event.dataTransfer.files);
  });

  // What the agent wrote shows once its run ends; another tab's upload shows with its note.
  var refreshTimer = null;
  function soon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshFiles, 250);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("session-live");
    if (!live || !window.MutationObserver) return;
    var lastMode = (document.getElementById("composer") || {}).dataset ? document.getElementById("composer").dataset.mode : "";
    new MutationObserver(function (mutations) {
      for (var i = 0; i < mutations.length; i++) {
        var added = mutations[i].addedNodes;
        for (var j = 0; j < added.length; j++) {
          var node = added[j];
          if (!(node instanceof Element)) continue;
          if (node.matches(".msg-note") || node.querySelector(".msg-note")) soon();
        }
      }
      var composer = document.getElementById("composer");
      var mode = composer ? composer.dataset.mode : "";
      if (mode !== lastMode) {
        if (mode === "idle") soon();
        lastMode = mode;
      }
    }).observe(live, {childList: true, subtree: true});
  });
})();
