mod backend_conformance;
