# Shortcuts for ./dev, which does the work (it needs only bash and Python 3.11+).
.PHONY: demo test ui lint schemas samples bench clean

demo test ui lint schemas samples bench:
	./dev $@

clean:
	rm -rf .callqa
