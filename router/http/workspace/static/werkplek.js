// Live updates: the server's event stream says "your work changed"; a page with a work list or the
// overview fetches it again (htmx, trigger "werk-gewijzigd"); a contact page says it changed. The
// stream opens once a page of a signed-in agent is shown (also after hx-boost swapped the page in) and
// closes when a page without one is (signed out). EventSource reconnects by itself after a drop; once
// back, the lists are fetched again, since events may have been missed meanwhile.
(function () {
  "use strict";
  var source = null;
  var dropped = false;

  function say(text) {
    var status = document.getElementById("live-status");
    if (status) status.textContent = text;
  }
  function changed() { document.body.dispatchEvent(new CustomEvent("werk-gewijzigd", { bubbles: true })); }

  function onEvent(e) {
    var data = {};
    try { data = JSON.parse(e.data); } catch (err) { return; }
    var main = document.getElementById("inhoud");
    var contact = main && main.getAttribute("data-contact");
    if (contact) {
      if (data.contact_id === contact) say("Dit contact is net gewijzigd. Laad de pagina opnieuw om het te zien.");
      return;
    }
    changed();
  }

  function sync() {
    var holder = document.getElementById("werkplek-live");
    var url = holder && holder.getAttribute("data-live");
    if (!url || !window.EventSource) {
      if (source) { source.close(); source = null; }
      return;
    }
    if (source) return;
    source = new EventSource(url);
    source.addEventListener("open", function () {
      if (dropped) { say("Weer verbonden. De gegevens zijn bijgewerkt."); changed(); }
      dropped = false;
    });
    source.addEventListener("error", function () {
      dropped = true;
      say("De verbinding is even weg. We proberen het opnieuw.");
    });
    source.addEventListener("werk", onEvent);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", sync);
  else sync();
  document.addEventListener("htmx:afterSettle", sync);
  window.addEventListener("pagehide", function () { if (source) source.close(); });
})();
